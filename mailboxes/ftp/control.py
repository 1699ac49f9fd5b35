"""The control channel: one FTP session of one partner (login grace, STOR/APPE/REST, RETR, audit)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any, ClassVar

from core.intake import IntakeError
from core.mailbox.user_view import view_for
from core.mailbox.view import MailboxError, MailboxView
from core.sessions import LiveSession
from mailboxes.auth import MailboxAuth, MailboxUser
from mailboxes.ftp.authorizer import PROTOCOL, client_address
from mailboxes.ftp.data import ChunkProducer, MailboxDTPHandler
from mailboxes.ftp.filesystem import MailboxFS
from mailboxes.ftp.pyftpd import TLS_FTPHandler
from mailboxes.ftp.replies import reply_for
from mailboxes.ftp.upload import UploadFile

log = logging.getLogger(__name__)


class MailboxFTPHandler(TLS_FTPHandler):  # type: ignore[misc]  # pyftpdlib ships no type hints
    """One FTP session of one partner. `FTPServer` makes a subclass per server with its settings."""

    abstracted_fs = MailboxFS
    dtp_handler = MailboxDTPHandler
    banner = "tradelane FTP/FTPS mailbox ready."
    auth: MailboxAuth
    proto_cmds: ClassVar[dict[str, Any]] = {k: v for k, v in TLS_FTPHandler.proto_cmds.items() if k != "STOU"}

    login_grace: float = 120.0
    _restart_position: int  # pyftpdlib's: the offset of the last REST

    def __init__(self, conn: socket.socket, server: Any, ioloop: Any = None) -> None:
        self.mailbox_user: MailboxUser | None = None
        self.live: LiveSession | None = None
        self.view: MailboxView | None = None
        self._upload: UploadFile | None = None
        self._download: tuple[str, int] | None = None
        self._login_deadline = time.monotonic() + self.login_grace
        self._grace_timer: Any = None
        super().__init__(conn, server, ioloop)

    # --- login grace time (OpenSSH's LoginGraceTime): an absolute deadline, unlike the idle timeout
    # that every command resets, so a client cannot hold a connection (and its thread) by chatting.

    def add_channel(self, map: Any = None, events: Any = None) -> None:
        # Called on the accepting IOLoop, then again on the session thread's own: the timer runs there.
        super().add_channel(map, events)
        self._cancel_grace_timer()
        if not self.authenticated:
            remaining = max(0.0, self._login_deadline - time.monotonic())
            self._grace_timer = self.ioloop.call_later(
                remaining, self._login_grace_expired, _errback=self.handle_error
            )

    def _cancel_grace_timer(self) -> None:
        timer, self._grace_timer = self._grace_timer, None
        if timer is not None and not timer.cancelled:
            timer.cancel()

    def _login_grace_expired(self) -> None:
        self._grace_timer = None
        if self.authenticated or self._closed:
            return
        self.respond(f"421 Not logged in within {self.login_grace:g} seconds; closing.", logfun=log.info)
        self.close_when_done()

    def on_login(self, username: str) -> None:
        self._cancel_grace_timer()

    # --- session

    def attach(self, user: MailboxUser, live: LiveSession) -> None:
        """Called by the authorizer once the login is accepted and the session counted."""
        self.mailbox_user = user
        self.live = live
        self.view = view_for(user, self.auth, client_address(self), PROTOCOL)

    def end_session(self, _why: str) -> None:
        """End this session from another thread (the partner was removed, disabled or locked).

        The sockets are shut down under the session's feet; its own thread sees them end, abandons
        an upload in progress (nothing is taken in) and closes, as when a client vanishes.
        """
        for channel in (self, self.data_channel):
            sock = getattr(channel, "socket", None)
            with contextlib.suppress(OSError, ValueError, AttributeError):
                if sock is not None:
                    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
                        dup.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        upload, self._upload = self._upload, None
        if upload is not None:
            upload.close()
            if upload.receipt is None:
                self.audit("upload.failed", upload.name, reason=upload.reason, bytes=upload.received)
        live, self.live = self.live, None
        self.mailbox_user = None
        self.view = None
        if live is not None:
            self.auth.close_session(live)

    def flush_account(self) -> None:
        super().flush_account()
        self._release()

    def close(self) -> None:
        self._cancel_grace_timer()
        try:
            super().close()
        finally:
            self._release()

    def audit(self, action: str, target: str, **detail: Any) -> None:
        if self.mailbox_user is None:
            return
        target = target.lstrip("/")  # "upload/x.csv", as the view and intake write it
        try:
            self.auth.record(
                self.mailbox_user, action, target, client_address(self), protocol=PROTOCOL, **detail
            )
        except Exception:
            log.exception("could not record audit event %s", action)

    # --- transfers

    def ftp_RETR(self, file: str) -> str | None:
        rest_pos, self._restart_position = self._restart_position, 0
        assert self.view is not None
        try:
            if rest_pos:
                size = int(self.view.stat(file).size or 0)
                if rest_pos > size:
                    self.respond(f"554 REST position ({rest_pos}) is past the end of the file ({size}).")
                    return None
            fd = self.view.open_read(file, rest_pos)
        except MailboxError as exc:
            self.audit("download.failed", file, reason=str(exc))
            self.respond(reply_for(exc))
            return None
        self._download = (file, rest_pos)
        try:
            producer = ChunkProducer(fd, self._current_type)
            self.push_dtp_data(producer, isproducer=True, file=fd, cmd="RETR")
        except Exception:
            fd.close()
            raise
        return file

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        cmd = "APPE" if "a" in mode else "STOR"
        rest_pos, self._restart_position = self._restart_position, 0
        assert self.view is not None
        previous = self._upload
        if previous is not None and not previous.finished:
            if self.data_channel is not None and self.data_channel.receive:
                self.respond("450 An upload is already in progress on this session.")
                return None
            # A STOR that never got its data connection (PASV given up, ABOR): let it go.
            self._upload = self._in_dtp_queue = None
            previous.close()
            self.audit("upload.failed", previous.name, reason="replaced by another upload", bytes=0)
        try:
            handle = self.view.open_upload(file, offset=rest_pos, append=cmd == "APPE")
        except (MailboxError, IntakeError) as exc:
            self.audit("upload.failed", file, reason=str(exc), command=cmd)
            self.respond(reply_for(exc))
            return None
        upload = self._upload = UploadFile(handle, file, rest_pos)
        if self.data_channel is not None:
            self.respond("125 Data connection already open. Transfer starting.")
            self.data_channel.file_obj = upload
            self.data_channel.enable_receiving(self._current_type, cmd)
        else:
            self.respond("150 File status okay. About to open data connection.")
            self._in_dtp_queue = (upload, cmd)
        return file

    def log_transfer(
        self, cmd: str, filename: str, receive: bool, completed: bool, elapsed: float, bytes: int
    ) -> None:
        super().log_transfer(cmd, filename, receive, completed, elapsed, bytes)
        if receive:
            upload, self._upload = self._upload, None
            if upload is not None and not completed:
                self.audit(
                    "upload.failed", upload.name, reason=upload.reason, bytes=upload.received, command=cmd
                )
            # a completed upload was recorded by intake ("upload", with its receipt)
            return
        # The view's file audited the download ("download", bytes sent) when it was closed.
        path, offset = self._download or (filename, 0)
        self._download = None
        if not completed:
            self.audit(
                "download.failed", path, sent=bytes, offset=offset, reason="the transfer was broken off"
            )
