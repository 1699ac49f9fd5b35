"""What every door of a process shares once a login is in: live sessions, open files, audit.

SFTP, FTP, the REST API and the portal each let logged-in partners and users open sessions and
files; the limits on both are per login across every door of the process, so the ledgers are one
per process (`shared_doors()`). The mailbox views (`core.mailbox.view`, `core.mailbox.user_view`)
take a `Doors` for their open files and audit events; `mailboxes.auth.MailboxAuth` is a `Doors`
that also decides logins (through `core.login`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from core import audit
from core.config import Settings, get_settings
from core.db import session_scope
from core.limits import OpenFiles
from core.login import LoginRefused, LoginUser
from core.sessions import LiveSession, SessionRegistry, shared_registry

__all__ = ["Doors", "shared_doors"]


class Doors:
    """The session registry, the open-files ledger and audit recording of the doors of a process.

    With the process's settings (none given, or `get_settings()` itself) the ledgers are the
    process's own, shared with every other `Doors` of the process; other settings (a test's) get
    ledgers of their own that honour them.
    """

    def __init__(self, settings: Settings | None = None, sessions: SessionRegistry | None = None) -> None:
        self.settings = settings or get_settings()
        own = settings is not None and settings is not get_settings()
        if sessions is None:
            sessions = SessionRegistry(self.settings) if own else shared_registry()
        self.sessions = sessions
        # Open files (SFTP handles, FTP transfers, portal uploads) per login and in all.
        self.open_files = _open_files(self.settings) if own else _process_open_files()

    def open_session(
        self,
        user: LoginUser,
        remote_addr: str | None = None,
        protocol: str = "",
        end: Callable[[str], None] | None = None,
    ) -> LiveSession:
        """Count a session (refused past the login's or the server's limit, and the refusal
        audited as `login.refused`); `end` closes it."""
        try:
            return self.sessions.open(user, remote_addr, protocol, end)
        except LoginRefused as exc:
            self.record(user, "login.refused", user.name, remote_addr, protocol=protocol, reason=str(exc))
            raise

    def close_session(self, live: LiveSession) -> None:
        self.sessions.close(live)

    def record(
        self, user: LoginUser, action: str, target: str, remote_addr: str | None, **detail: object
    ) -> None:
        """An audit event for something a logged-in login did (download, delete, rename, ...)."""
        with session_scope() as session:
            audit.record(
                session,
                action,
                actor=user.actor,
                account_id=user.account_id,
                target=target,
                remote_addr=remote_addr,
                **detail,
            )


def _open_files(settings: Settings) -> OpenFiles:
    return OpenFiles(settings.max_open_files_per_partner, settings.open_file_budget)


_guard = threading.Lock()
# The process's open-files ledger and its doors, for the settings object they were made from:
# a new settings object (tests clear `get_settings`'s cache) gets new ones that honour it.
_process: tuple[Settings, OpenFiles] | None = None
_shared: Doors | None = None


def _process_open_files() -> OpenFiles:
    global _process
    settings = get_settings()
    with _guard:
        if _process is None or _process[0] is not settings:
            _process = (settings, _open_files(settings))
        return _process[1]


def shared_doors() -> Doors:
    """The process's doors: the portal shares them with SFTP, FTP and REST in the same process."""
    global _shared
    with _guard:
        current = _shared
    if current is None or current.settings is not get_settings():
        current = Doors()
        with _guard:
            _shared = current
    return current
