"""Logins and sessions for the mailbox servers (SFTP, FTP), over the one login policy in core.

`core.login.LoginPolicy` decides every login (address bans, account locks, allow-lists, audit) for
every door; `core.sessions.SessionRegistry` counts live sessions against their limits and ends those
of a partner that was removed, disabled or locked. One `MailboxAuth` is shared by both servers of a
process, and by default both share the process's registry with the REST API.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from core import audit
from core.config import Settings, get_settings
from core.db import session_scope
from core.limits import OpenFiles
from core.login import LoginPolicy, LoginRefused, LoginUser
from core.sessions import LiveSession, SessionRegistry, shared_registry

__all__ = ["LoginRefused", "MailboxAuth", "MailboxUser", "parse_public_key"]

# A logged-in partner as a protocol session sees it (the same object for every door).
MailboxUser = LoginUser


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
    def __init__(
        self,
        settings: Settings | None = None,
        policy: LoginPolicy | None = None,
        sessions: SessionRegistry | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.policy = policy or LoginPolicy(self.settings)
        if sessions is None:
            # The process's settings share the process's registry (with the REST API); other
            # settings (a test's) get a registry of their own that honours them.
            own = settings is not None and settings is not get_settings()
            sessions = SessionRegistry(self.settings) if own else shared_registry()
        self.sessions = sessions
        # Open files (SFTP handles, FTP transfers) per partner and in all, counted across protocols.
        self.open_files = OpenFiles(self.settings.max_open_files_per_partner, self.settings.open_file_budget)

    # -- logins ---------------------------------------------------------------------------------

    def login_password(
        self, username: str, password: str, remote_addr: str | None, protocol: str
    ) -> MailboxUser:
        return self.policy.password(username, password, remote_addr, protocol)

    def login_key(
        self, username: str, key_type: str, key_blob: bytes, remote_addr: str | None, protocol: str
    ) -> MailboxUser:
        return self.policy.key(username, key_type, key_blob, remote_addr, protocol)

    def key_is_known(self, username: str, key_type: str, key_blob: bytes, remote_addr: str | None) -> bool:
        """For SSH's "would you accept this key?" probe: no strike, no audit."""
        return self.policy.key_is_known(username, key_type, key_blob, remote_addr)

    # -- sessions -------------------------------------------------------------------------------

    def open_session(
        self,
        user: MailboxUser,
        remote_addr: str | None = None,
        protocol: str = "",
        end: Callable[[str], None] | None = None,
    ) -> LiveSession:
        """Count a session (refused past the partner's or the server's limit, and the refusal
        audited as `login.refused`); `end` closes it."""
        try:
            return self.sessions.open(user, remote_addr, protocol, end)
        except LoginRefused as exc:
            self.record(user, "login.refused", user.name, remote_addr, protocol=protocol, reason=str(exc))
            raise

    def close_session(self, live: LiveSession) -> None:
        self.sessions.close(live)

    def record(
        self, user: MailboxUser, action: str, target: str, remote_addr: str | None, **detail: object
    ) -> None:
        """An audit event for something a logged-in partner did (download, delete, rename, ...)."""
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
