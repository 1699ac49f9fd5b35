"""Logins for pyftpdlib: its authorizer interface over the shared `MailboxAuth` (core.login's policy).

A wrong password, an unknown name, a locked account and an address outside the allow-list all read
"530 Login incorrect.", so nobody learns which names exist; a banned address and the session limit
say what they are.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mailboxes.auth import LoginRefused, MailboxAuth
from mailboxes.ftp.pyftpd import AuthenticationFailed

if TYPE_CHECKING:
    from mailboxes.ftp.control import MailboxFTPHandler

log = logging.getLogger(__name__)

PROTOCOL = "ftp"
LOGIN_INCORRECT = "Login incorrect."
LOCKED_OUT = "Too many failed logins from your address; try again later."
TOO_MANY_SESSIONS = "Too many sessions for this login; close one and try again."


def client_address(handler: Any) -> str | None:
    ip = str(getattr(handler, "remote_ip", "") or "")
    return ip.removeprefix("::ffff:") or None


class MailboxAuthorizer:
    """pyftpdlib's authorizer interface over `MailboxAuth`.

    Permissions are not decided here: the partner's home has per-folder rules that `MailboxView`
    enforces with a clear message, so every path command is let through to the filesystem except
    the two that make no sense for a mailbox (SITE CHMOD, MFMT).
    """

    def __init__(self, auth: MailboxAuth) -> None:
        self.auth = auth

    def validate_authentication(self, username: str, password: str, handler: MailboxFTPHandler) -> None:
        remote_addr = client_address(handler)
        try:
            user = self.auth.login_password(username, password, remote_addr, PROTOCOL)
        except LoginRefused as exc:
            log.info("FTP login refused for %r from %s: %s", username, remote_addr, exc)
            # Only a banned address is told apart: it says nothing about any user.
            raise AuthenticationFailed(LOCKED_OUT if exc.banned_for else LOGIN_INCORRECT) from None
        try:
            live = self.auth.open_session(user, remote_addr, PROTOCOL, end=handler.end_session)
        except LoginRefused:
            raise AuthenticationFailed(TOO_MANY_SESSIONS) from None
        handler.attach(user, live)

    def get_home_dir(self, username: str) -> str:
        return "/"

    def has_user(self, username: str) -> bool:
        return False  # never asked by the handler; nothing may learn which names exist

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return perm not in "MT"

    def get_perms(self, username: str) -> str:
        return "elradfw"

    def get_msg_login(self, username: str) -> str:
        return "Logged in. Put files in /upload; fetch files from /download."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass
