"""What one SSH connection knows: who, from where, since when active; and its end."""

from __future__ import annotations

import contextlib
import threading
import time

import paramiko

from core.config import Settings
from core.sessions import LiveSession
from mailboxes.auth import LoginRefused, MailboxAuth, MailboxUser

PROTOCOL = "sftp"


class Connection:
    """What one SSH connection knows: who, from where, since when active."""

    def __init__(
        self, settings: Settings, auth: MailboxAuth, transport: paramiko.Transport, remote_addr: str
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.transport = transport
        self.remote_addr = remote_addr
        self.user: MailboxUser | None = None
        self.live: LiveSession | None = None  # counted once the login is complete
        self.connected_at = self.last_activity = time.monotonic()
        self.failed_passwords = 0
        self.channels = 0
        self.offered_key: tuple[str, str, bytes] | None = None  # a known key, login pending
        self.rejected_key: tuple[str, str, bytes] | None = None
        self.closed = False
        self.lock = threading.Lock()

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def close_soon(self, delay: float = 0.0) -> None:
        """Close from another thread (paramiko's own may be the caller), after `delay` seconds."""
        timer = threading.Timer(delay, self.transport.close)
        timer.daemon = True
        timer.start()

    def finish(self) -> None:
        """The transport ended: release the session and record a refused key login, once."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        auth = self.auth
        if self.live is not None:
            auth.close_session(self.live)
            self.live = None
        if self.user is None and self.failed_passwords == 0 and self.rejected_key is not None:
            # Only unknown keys were offered: one failed login (audited, counted), not one per key.
            username, key_type, blob = self.rejected_key
            with contextlib.suppress(LoginRefused):
                auth.login_key(username, key_type, blob, self.remote_addr, PROTOCOL)
