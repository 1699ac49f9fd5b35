"""Logins for the mailbox servers (SFTP, FTP), over the one login policy in core.

`core.login.LoginPolicy` decides every login (address bans, account locks, allow-lists, audit) for
every door; what the doors share once a login is in (the session registry that counts live
sessions and ends those of a partner that was removed, disabled or locked, the open-files ledger,
audit recording) is `core.mailbox.doors.Doors`. One `MailboxAuth` is shared by both servers of a
process, and by default it shares the process's ledgers with the REST API and the portal.
"""

from __future__ import annotations

import base64

from core.config import Settings
from core.login import LoginPolicy, LoginRefused, LoginUser
from core.mailbox.doors import Doors
from core.sessions import SessionRegistry

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


class MailboxAuth(Doors):
    """The doors of SFTP and FTP, and their logins."""

    def __init__(
        self,
        settings: Settings | None = None,
        policy: LoginPolicy | None = None,
        sessions: SessionRegistry | None = None,
    ) -> None:
        super().__init__(settings, sessions)
        self.policy = policy or LoginPolicy(self.settings)

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
