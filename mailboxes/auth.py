"""Logins for the mailbox servers (SFTP, FTP): passwords, SSH keys, lockout, allow-lists, session limits.

One `MailboxAuth` is shared by every protocol server in a process so lockouts and connection counts
are the same whichever door a partner knocks on. Every success and failure is an audit event.
"""

from __future__ import annotations

import base64
import hmac
import threading
from dataclasses import dataclass

from core import audit, partners
from core.config import Settings, get_settings
from core.db import session_scope
from core.limits import OpenFiles
from core.lockout import Lockout, shared_lockout
from core.models import Partner
from core.partners import network_allowed


class LoginRefused(Exception):
    """A login that must not proceed. The message is for logs and audit, never shown to the client."""


@dataclass(frozen=True)
class MailboxUser:
    """A logged-in partner, detached from the store: what a protocol session needs."""

    partner_id: int
    account_id: int
    name: str
    can_delete_downloads: bool
    max_file_bytes: int | None
    max_connections: int | None


def _user(partner: Partner) -> MailboxUser:
    assert partner.id is not None
    return MailboxUser(
        partner_id=partner.id,
        account_id=partner.account_id,
        name=partner.name,
        can_delete_downloads=partner.can_delete_downloads,
        max_file_bytes=partner.max_file_bytes,
        max_connections=partner.max_connections,
    )


def parse_public_key(line: str) -> tuple[str, bytes]:
    """An OpenSSH public key line ("ssh-ed25519 AAAA... comment") → (type, key blob)."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    try:
        return parts[0], base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise ValueError("public key is not valid base64") from exc


class MailboxAuth:
    def __init__(self, settings: Settings | None = None, lockout: Lockout | None = None) -> None:
        self.settings = settings or get_settings()
        self.lockout = lockout or shared_lockout()
        # Open files (SFTP handles, FTP transfers) per partner and in all, counted across protocols.
        self.open_files = OpenFiles(self.settings.max_open_files_per_partner, self.settings.open_file_budget)
        self._sessions: dict[int, int] = {}
        self._lock = threading.Lock()

    # -- logins ---------------------------------------------------------------------------------

    def login_password(
        self, username: str, password: str, remote_addr: str | None, protocol: str
    ) -> MailboxUser:
        self._check_lockout(username, remote_addr, protocol)
        with session_scope() as session:
            partner = partners.authenticate(session, username, password)
            if partner is None:
                self._fail(session, username, remote_addr, protocol, "wrong user name or password")
            assert partner is not None
            return self._succeed(session, partner, remote_addr, protocol, "password")

    def login_key(
        self, username: str, key_type: str, key_blob: bytes, remote_addr: str | None, protocol: str
    ) -> MailboxUser:
        self._check_lockout(username, remote_addr, protocol)
        with session_scope() as session:
            partner = partners.get(session, username)
            known = []
            if partner is not None and partner.enabled:
                for line in partner.ssh_public_keys:
                    try:
                        known.append(parse_public_key(line))
                    except ValueError:
                        continue
            if not any(t == key_type and hmac.compare_digest(b, key_blob) for t, b in known):
                self._fail(session, username, remote_addr, protocol, "public key not accepted")
            assert partner is not None
            return self._succeed(session, partner, remote_addr, protocol, "publickey")

    def key_is_known(self, username: str, key_type: str, key_blob: bytes) -> bool:
        """For SSH's "would you accept this key?" probe: no lockout strike, no audit."""
        with session_scope() as session:
            partner = partners.get(session, username)
            if partner is None or not partner.enabled:
                return False
            for line in partner.ssh_public_keys:
                try:
                    t, b = parse_public_key(line)
                except ValueError:
                    continue
                if t == key_type and hmac.compare_digest(b, key_blob):
                    return True
        return False

    def _check_lockout(self, username: str, remote_addr: str | None, protocol: str) -> None:
        wait = self.lockout.locked(username, remote_addr)
        if wait > 0:
            with session_scope() as session:
                audit.record(
                    session,
                    "login.locked",
                    actor=f"partner:{username}",
                    remote_addr=remote_addr,
                    protocol=protocol,
                    retry_after=round(wait),
                )
            raise LoginRefused(f"{username} from {remote_addr} is locked out for {wait:.0f}s more")

    def _fail(self, session: object, username: str, remote_addr: str | None, protocol: str, why: str) -> None:
        from sqlmodel import Session

        assert isinstance(session, Session)
        locked = self.lockout.failed(username, remote_addr)
        audit.record(
            session,
            "login.failed",
            actor=f"partner:{username}",
            remote_addr=remote_addr,
            protocol=protocol,
            reason=why,
            locked=locked,
        )
        session.commit()
        raise LoginRefused(why)

    def _succeed(
        self, session: object, partner: Partner, remote_addr: str | None, protocol: str, method: str
    ) -> MailboxUser:
        from sqlmodel import Session

        assert isinstance(session, Session)
        if not network_allowed(partner.allowed_networks, remote_addr):
            self._fail(
                session, partner.name, remote_addr, protocol, f"{remote_addr} is not in the allow-list"
            )
        self.lockout.succeeded(partner.name, remote_addr)
        audit.record(
            session,
            "login",
            actor=f"partner:{partner.name}",
            account_id=partner.account_id,
            remote_addr=remote_addr,
            protocol=protocol,
            method=method,
        )
        return _user(partner)

    # -- sessions -------------------------------------------------------------------------------

    def open_session(self, user: MailboxUser) -> None:
        """Count a session; refuses past the partner's (or the server's) limit."""
        limit = user.max_connections or self.settings.max_connections_per_partner
        with self._lock:
            current = self._sessions.get(user.partner_id, 0)
            if current >= limit:
                raise LoginRefused(f"{user.name} already has {current} sessions (limit {limit})")
            self._sessions[user.partner_id] = current + 1

    def close_session(self, user: MailboxUser) -> None:
        with self._lock:
            remaining = self._sessions.get(user.partner_id, 0) - 1
            if remaining > 0:
                self._sessions[user.partner_id] = remaining
            else:
                self._sessions.pop(user.partner_id, None)

    def record(
        self, user: MailboxUser, action: str, target: str, remote_addr: str | None, **detail: object
    ) -> None:
        """An audit event for something a logged-in partner did (download, delete, rename, ...)."""
        with session_scope() as session:
            audit.record(
                session,
                action,
                actor=f"partner:{user.name}",
                account_id=user.account_id,
                target=target,
                remote_addr=remote_addr,
                **detail,
            )
