"""Live sessions of partners in this process: counted against their limits, ended when they must be.

The mailbox servers (SFTP, FTP) and the REST API's transfers open a `LiveSession` for each logged-in
connection, with a callback that closes it. A watcher thread looks at the partners with live
sessions every `session_check_seconds` (one indexed query) and ends each session that
`core.login.session_refusal` says must end: the partner was removed, disabled or locked, its
sessions were ended (a new password, `partner unlock`), or its allow-list no longer holds the
session's address. The CLI changes the database from another process; this is how a running
`tradelane up` notices within a second or two.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import col, select

from core import audit
from core.config import Settings, get_settings
from core.db import session_scope
from core.login import LoginRefused, LoginUser, session_refusal
from core.models import AccountUser, Partner

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LiveSession:
    """One connection of one partner. `end(reason)` closes it; it may be called from any thread."""

    user: LoginUser
    remote_addr: str | None
    protocol: str
    end: Callable[[str], None] | None = None
    ended: str | None = None  # why the registry ended it
    counted: bool = field(default=True, repr=False)


class SessionRegistry:
    """The live sessions of this process, by partner, with a watcher that ends those that must end."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._live: dict[tuple[str, int], list[LiveSession]] = {}  # by LoginUser.key
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    def open(
        self,
        user: LoginUser,
        remote_addr: str | None,
        protocol: str,
        end: Callable[[str], None] | None = None,
        *,
        server_limit: bool = True,
    ) -> LiveSession:
        """Count a session; LoginRefused past the partner's own limit, else the server's (`server_limit`)."""
        cap = user.max_connections or (self.settings.max_connections_per_partner if server_limit else None)
        live = LiveSession(user, remote_addr, protocol, end)
        with self._lock:
            sessions = self._live.setdefault(user.key, [])
            if cap and len(sessions) >= cap:
                raise LoginRefused(f"{user.name} already has {len(sessions)} sessions (limit {cap})")
            sessions.append(live)
        self._ensure_watcher()
        return live

    def close(self, live: LiveSession) -> None:
        with self._lock:
            sessions = self._live.get(live.user.key, [])
            if live in sessions:
                sessions.remove(live)
            if not sessions:
                self._live.pop(live.user.key, None)

    def count(self, partner_id: int, kind: str = "partner") -> int:
        with self._lock:
            return len(self._live.get((kind, partner_id), []))

    def sessions(self) -> list[LiveSession]:
        with self._lock:
            return [s for sessions in self._live.values() for s in sessions]

    # -- ending sessions ------------------------------------------------------------------------

    def check(self) -> int:
        """End every live session the database says must end; how many were ended."""
        live = [s for s in self.sessions() if s.ended is None]
        if not live:
            return 0
        ids = {s.user.partner_id for s in live if s.user.kind == "partner"}
        user_ids = {s.user.partner_id for s in live if s.user.kind == "user"}
        logins: dict[tuple[str, int | None], Partner | AccountUser] = {}
        with session_scope() as session:
            if ids:
                partners = session.exec(select(Partner).where(col(Partner.id).in_(ids)))
                logins.update({("partner", p.id): p for p in partners})
            if user_ids:
                users = session.exec(select(AccountUser).where(col(AccountUser.id).in_(user_ids)))
                logins.update({("user", u.id): u for u in users})
        ended = 0
        for s in live:
            why = session_refusal(logins.get(s.user.key), s.remote_addr, s.user.started_at)
            if why is not None:
                self.end(s, why)
                ended += 1
        return ended

    def end(self, live: LiveSession, reason: str) -> None:
        """Close one session now (its server releases it when the connection is gone)."""
        if live.ended is not None:
            return
        live.ended = reason
        log.info(
            "ending the %s session of %s from %s: %s", live.protocol, live.user.name, live.remote_addr, reason
        )
        try:
            with session_scope() as session:
                audit.record(
                    session,
                    "session.ended",
                    actor=live.user.actor,
                    account_id=live.user.account_id,
                    target=live.user.name,
                    remote_addr=live.remote_addr,
                    protocol=live.protocol,
                    reason=reason,
                )
        except Exception:  # the session must end even if the audit cannot be written
            log.exception("could not record the end of a session")
        if live.end is not None:
            try:
                live.end(reason)
            except Exception:
                log.exception("could not close the %s session of %s", live.protocol, live.user.name)

    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is not None and self._watcher.is_alive():
                return
            self._stop.clear()
            self._watcher = threading.Thread(
                target=_watch,
                args=(weakref.ref(self), self._stop, self.settings.session_check_seconds),
                name="session-watcher",
                daemon=True,
            )
            self._watcher.start()

    def stop(self) -> None:
        self._stop.set()


def _watch(registry_ref: weakref.ref[SessionRegistry], stop: threading.Event, interval: float) -> None:
    # A weak reference: a registry nobody uses any more (a test's) lets its watcher end.
    while not stop.wait(interval):
        registry = registry_ref()
        if registry is None:
            return
        try:
            registry.check()
        except Exception:  # the database may be briefly away; look again next time
            log.exception("could not check live sessions")
        del registry


_shared: SessionRegistry | None = None
_shared_guard = threading.Lock()


def shared_registry() -> SessionRegistry:
    """The process's one registry: SFTP, FTP and the REST API count sessions in it together."""
    global _shared
    with _shared_guard:
        if _shared is None:
            _shared = SessionRegistry()
        return _shared
