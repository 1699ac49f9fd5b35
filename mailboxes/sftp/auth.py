"""Authentication and channel policy of one SSH connection, over the shared `MailboxAuth`."""

from __future__ import annotations

import logging
import threading

import paramiko

from mailboxes.auth import LoginRefused
from mailboxes.sftp.connection import PROTOCOL, Connection
from mailboxes.sftp.fastpath import use_chunk_pipe

log = logging.getLogger(__name__)

# paramiko's answers, typed (paramiko ships no type hints).
AUTH_FAILED: int = paramiko.AUTH_FAILED
AUTH_SUCCESSFUL: int = paramiko.AUTH_SUCCESSFUL
OPEN_SUCCEEDED: int = paramiko.OPEN_SUCCEEDED
OPEN_PROHIBITED: int = paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
_MAX_FAILED_PASSWORDS = 6
_MAX_CHANNELS = 4


class SSHServer(paramiko.ServerInterface):  # type: ignore[misc]  # paramiko ships no type hints
    """Authentication and channel policy for one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.auth = conn.auth

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def check_auth_password(self, username: str, password: str) -> int:
        conn = self.conn
        conn.touch()
        try:
            conn.user = self.auth.login_password(username, password, conn.remote_addr, PROTOCOL)
        except LoginRefused as exc:
            log.info("sftp login of %s from %s refused: %s", username, conn.remote_addr, exc)
            conn.failed_passwords += 1
            if conn.failed_passwords >= _MAX_FAILED_PASSWORDS:
                conn.close_soon()
            return AUTH_FAILED
        return AUTH_SUCCESSFUL

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        # paramiko asks this before it checks the signature (and for the client's "would you take
        # this key?" probe), so here the key is only recognised; the login itself (lockout,
        # allow-list, audit) happens when the authenticated client opens its session channel.
        conn = self.conn
        conn.touch()
        offered = (username, key.get_name(), key.asbytes())
        if self.auth.key_is_known(*offered, conn.remote_addr):
            conn.offered_key = offered
            return AUTH_SUCCESSFUL
        conn.rejected_key = offered
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        conn = self.conn
        conn.touch()
        if kind != "session" or conn.channels >= _MAX_CHANNELS:
            return OPEN_PROHIBITED
        if not self._login_complete():
            conn.close_soon(delay=1.0)  # once the client has read why
            return OPEN_PROHIBITED
        conn.channels += 1
        return OPEN_SUCCEEDED

    def _login_complete(self) -> bool:
        conn = self.conn
        if conn.user is None and conn.offered_key is not None:
            username, key_type, blob = conn.offered_key
            try:
                conn.user = self.auth.login_key(username, key_type, blob, conn.remote_addr, PROTOCOL)
            except LoginRefused as exc:
                log.info("sftp key login of %s from %s refused: %s", username, conn.remote_addr, exc)
                return False
        if conn.user is None:
            return False
        if conn.live is None:
            try:
                # Removing, disabling or locking the partner ends the connection (core/sessions.py).
                conn.live = self.auth.open_session(
                    conn.user, conn.remote_addr, PROTOCOL, end=lambda _why: conn.transport.close()
                )
            except LoginRefused as exc:
                log.info("sftp session of %s refused: %s", conn.user.name, exc)
                return False
        return True

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if name != "sftp" or self.conn.user is None:
            return self._refuse(channel, f"subsystem {name!r}")
        # Swapped here, in the transport's thread, before the subsystem's thread can wait on it.
        use_chunk_pipe(channel)
        return bool(super().check_channel_subsystem_request(channel, name))

    # A mailbox offers SFTP only: a channel asking for anything else is refused and closed at once,
    # rather than kept open (and counted against the connection's channels) doing nothing.

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        return self._refuse(channel, "exec")

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        return self._refuse(channel, "shell")

    def _refuse(self, channel: paramiko.Channel, what: str) -> bool:
        log.info(
            "sftp %s request from %s refused: only the sftp subsystem is served", what, self.conn.remote_addr
        )
        # Closed from another thread: this one is paramiko's, which must first send the refusal.
        timer = threading.Timer(0.1, channel.close)
        timer.daemon = True
        timer.start()
        return False
