"""The partner mailbox over SFTP: paramiko's SSH transport, our own SFTP request loop over `MailboxView`.

`SFTPServer(settings, auth).start()` listens on `settings.host:settings.sftp_port` (port 0 picks a
free one; `server.port` says which) and serves every partner its own home: `/upload` (write,
list), `/download` (read, delete if allowed). Logins are password or SSH public key, through
`MailboxAuth`, so lockouts, allow-lists, session limits and audit events are the ones every other
door uses. Host keys (Ed25519 and RSA) are generated once into TRADELANE_HOME and kept.

An SFTP CLOSE of a written file is the end of an upload: the file goes through `core.intake`.
A connection that drops with a file still open leaves the bytes staged for a resume (`reput`,
`put -a`) and triggers nothing.

Speed. paramiko's own SFTP server answers one request at a time with several copies and a few
Python calls per 32 KiB, which is 2-4x slower than OpenSSH. Here:

* the server answers `limits@openssh.com`, so OpenSSH's `sftp` (and other clients that ask) send
  and fetch ~255 KiB per request instead of 32 KiB, as they do against OpenSSH's sftp-server;
* the SSH channel offers a large window (16 MiB: 64 such requests in flight) and a large
  maximum packet, so the client is never held back by us (OpenSSH's client still cuts its data
  into ~50 KiB SSH packets) -- once the channel runs the sftp subsystem; before that it offers
  64 KiB (`OPEN_WINDOW`), so a channel nobody reads cannot be made to hold more;
* the request loop reads everything the channel has buffered at once into one reused buffer,
  parses WRITE and READ with `struct` on memoryviews (the data is written with `os.pwrite`
  straight from that buffer and hashed in the same pass; READ replies are read with `preadv`
  into reused packet buffers), and sends all replies for what it has read in one channel write;
* paramiko reads the socket through a small buffer (`_BufferedSocket`), so the client's many
  small packets (READ requests, window updates) cost one system call per burst, not two each;
* no store access, stat or allocation per request beyond that;
* the process's GIL switch interval is lowered (see `GIL_SWITCH_INTERVAL`).

Limits (each a setting, see `core.config`): connections in all and per address, and those not
logged in yet (OpenSSH's MaxStartups and PerSourceMaxStartups), are checked before a connection
gets a thread; a connection must log in within the login grace time (OpenSSH's LoginGraceTime); a
client that sends more than the channel window it was offered is disconnected (paramiko buffers
whatever arrives); exec, shell and every subsystem but sftp are refused and their channel closed;
handles are capped per SFTP session, and open files per partner (`MailboxAuth.open_files`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat as stat_mod
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from paramiko.common import (
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EXTENDED_DATA,
    cMSG_CHANNEL_WINDOW_ADJUST,
)
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_FSETSTAT,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_INIT,
    CMD_LSTAT,
    CMD_MKDIR,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_READLINK,
    CMD_REALPATH,
    CMD_REMOVE,
    CMD_RENAME,
    CMD_RMDIR,
    CMD_SETSTAT,
    CMD_STAT,
    CMD_STATUS,
    CMD_SYMLINK,
    CMD_VERSION,
    CMD_WRITE,
    SFTP_BAD_MESSAGE,
    SFTP_EOF,
    SFTP_FAILURE,
    SFTP_FLAG_APPEND,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_READ,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTP_NO_SUCH_FILE,
    SFTP_OK,
    SFTP_OP_UNSUPPORTED,
    SFTP_PERMISSION_DENIED,
)

from core.config import Settings
from core.sessions import LiveSession
from mailboxes.auth import LoginRefused, MailboxAuth, MailboxUser
from mailboxes.view import (
    Entry,
    Forbidden,
    MailboxError,
    MailboxView,
    NoSuchFile,
    UploadHandle,
)

log = logging.getLogger(__name__)

PROTOCOL = "sftp"
HOST_KEY_FILES = {"ssh_host_ed25519_key": "ed25519", "ssh_host_rsa_key": "rsa"}
SERVER_VERSION = "SSH-2.0-tradelane"

# SSH channel: the window the client may fill before we ask for more, and the largest SSH packet
# it may send us. 255 KiB SFTP writes then travel in one packet; the window holds many of them.
WINDOW_SIZE = 16 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024 + 4096
# The window a session channel starts with, until it runs the sftp subsystem: what a channel that
# nobody reads can be made to hold.
OPEN_WINDOW = 64 * 1024
# SFTP (what `limits@openssh.com` announces; OpenSSH's sftp-server announces the same).
MAX_MESSAGE = 256 * 1024
MAX_READ = MAX_WRITE = MAX_MESSAGE - 1024
# Each connection is two threads handing data to each other (paramiko's transport thread decrypts,
# the session thread writes and hashes). With CPython's default 5 ms GIL switch interval the one
# that just released the GIL for I/O often waits out a whole interval to get it back; at 0.5 ms
# uploads and downloads run 1.3-1.8x faster. `start()` lowers the process's interval to this.
GIL_SWITCH_INTERVAL = 0.0005
_RECV_SIZE = 1024 * 1024
_READ_BUFFER = 4 * 1024 * 1024  # > 2 SFTP messages, and room to read ahead
_JOIN_BELOW = 64 * 1024
_DIRECT_RECV = 16 * 1024
_NAMES_PER_READDIR = 100
_MAX_FAILED_PASSWORDS = 6
_MAX_CHANNELS = 4

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEAD = struct.Struct(">IBI")  # length, type, request id
_STATUS = struct.Struct(">IBIII")  # length, type, request id, code, message length


# --- host keys --------------------------------------------------------------------------------


def load_host_keys(home: Path) -> list[paramiko.PKey]:
    """The server's host keys, generated into `home` on first use (0600) and kept across restarts."""
    home.mkdir(parents=True, exist_ok=True)
    keys: list[paramiko.PKey] = []
    for filename, kind in HOST_KEY_FILES.items():
        path = home / filename
        if not path.exists():
            _generate_host_key(path, kind)
        if kind == "ed25519":
            keys.append(paramiko.Ed25519Key(filename=str(path)))
        else:
            keys.append(paramiko.RSAKey(filename=str(path)))
    return keys


def _generate_host_key(path: Path, kind: str) -> None:
    private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    encoding, public_format = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    public = private.public_key().public_bytes(encoding, public_format)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(temp, path)  # never replaces a key another process made meanwhile
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    with contextlib.suppress(OSError):
        path.with_name(path.name + ".pub").write_bytes(public + b" tradelane\n")


# --- one SSH connection -----------------------------------------------------------------------


class _Connection:
    """What one SSH connection knows: who, from where, since when active."""

    def __init__(self, server: SFTPServer, transport: paramiko.Transport, remote_addr: str) -> None:
        self.server = server
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
        auth = self.server.auth
        if self.live is not None:
            auth.close_session(self.live)
            self.live = None
        if self.user is None and self.failed_passwords == 0 and self.rejected_key is not None:
            # Only unknown keys were offered: one failed login (audited, counted), not one per key.
            username, key_type, blob = self.rejected_key
            with contextlib.suppress(LoginRefused):
                auth.login_key(username, key_type, blob, self.remote_addr, PROTOCOL)


class _BufferedSocket:
    """The socket as paramiko's Packetizer reads it, with a read buffer in between.

    paramiko asks for every SSH packet in two or three small `recv` calls (first block, rest, MAC);
    a download brings thousands of small packets (the client's READ requests and window updates),
    each costing system calls and a GIL hand-over. Here one `recv_into` fills a buffer that many
    small reads are served from; big reads on an empty buffer go straight to the socket.
    """

    def __init__(self, sock: socket.socket, size: int = 256 * 1024) -> None:
        self._sock = sock
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._start = self._end = 0

    def recv(self, n: int) -> bytes:
        if self._start == self._end:
            if n >= _DIRECT_RECV:
                return self._sock.recv(n)
            got = self._sock.recv_into(self._buf)
            if not got:
                return b""
            self._start, self._end = 0, got
        take = min(n, self._end - self._start)
        out = bytes(self._view[self._start : self._start + take])
        self._start += take
        return out

    def send(self, data: bytes) -> int:
        return self._sock.send(data)

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def close(self) -> None:
        self._sock.close()

    @property
    def _closed(self) -> bool:
        return bool(getattr(self._sock, "_closed", False))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _within_window(channel: paramiko.Channel, size: int) -> None:
    """Refuse channel data past the window we offered: paramiko would buffer it all.

    A well-behaved client never sends more than the window, and the unread bytes of a channel can
    never legitimately exceed it; more is a protocol violation, answered by disconnecting.
    """
    unread = len(channel.in_buffer) + len(channel.in_stderr_buffer)
    if unread + size > channel.in_window_size:
        try:
            peer = channel.getpeername()[0]
        except (OSError, IndexError):
            peer = "?"
        log.warning(
            "SFTP client %s sent past its %d-byte channel window; disconnecting", peer, channel.in_window_size
        )
        raise EOFError("client exceeded the channel window")


def _feed_data(channel: paramiko.Channel, m: paramiko.Message) -> None:
    data = m.get_binary()
    _within_window(channel, len(data))
    channel._feed(data)


def _feed_extended_data(channel: paramiko.Channel, m: paramiko.Message) -> None:
    code = m.get_int()
    data = m.get_binary()
    _within_window(channel, len(data))
    again = paramiko.Message()
    again.add_int(code)
    again.add_string(data)
    again.rewind()
    channel._feed_extended(again)


def _grow_window(channel: paramiko.Channel, size: int) -> None:
    """Offer the client a larger window on `channel` (an SSH window adjust for the difference)."""
    with channel.lock:
        extra = size - channel.in_window_size
        if extra <= 0 or channel.closed:
            return
        channel.in_window_size = size
        channel.in_window_threshold = size // 10
    m = paramiko.Message()
    m.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
    m.add_int(channel.remote_chanid)
    m.add_int(extra)
    channel.transport._send_user_message(m)


class _Transport(paramiko.Transport):
    """A paramiko Transport that tells its connection when it ends, and holds clients to their window."""

    on_finish: Callable[[], None] | None = None
    _channel_handler_table = {  # noqa: RUF012 (paramiko's own class attribute, extended)
        **paramiko.Transport._channel_handler_table,
        MSG_CHANNEL_DATA: _feed_data,
        MSG_CHANNEL_EXTENDED_DATA: _feed_extended_data,
    }

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self.on_finish is not None:
                try:
                    self.on_finish()
                except Exception:
                    log.exception("cleaning up an SFTP connection failed")


class _SSHServer(paramiko.ServerInterface):
    """Authentication and channel policy for one connection."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.auth = conn.server.auth

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
            return paramiko.AUTH_FAILED
        return paramiko.AUTH_SUCCESSFUL

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        # paramiko asks this before it checks the signature (and for the client's "would you take
        # this key?" probe), so here the key is only recognised; the login itself (lockout,
        # allow-list, audit) happens when the authenticated client opens its session channel.
        conn = self.conn
        conn.touch()
        offered = (username, key.get_name(), key.asbytes())
        if self.auth.key_is_known(*offered, conn.remote_addr):
            conn.offered_key = offered
            return paramiko.AUTH_SUCCESSFUL
        conn.rejected_key = offered
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        conn = self.conn
        conn.touch()
        if kind != "session" or conn.channels >= _MAX_CHANNELS:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        if not self._login_complete():
            conn.close_soon(delay=1.0)  # once the client has read why
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        conn.channels += 1
        return paramiko.OPEN_SUCCEEDED

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


# --- the SFTP subsystem -----------------------------------------------------------------------


def _attrs(entry: Entry) -> paramiko.SFTPAttributes:
    attrs = paramiko.SFTPAttributes()
    attrs.filename = entry.name
    attrs.st_size = entry.size
    attrs.st_uid = attrs.st_gid = 0
    attrs.st_mode = entry.mode
    attrs.st_atime = attrs.st_mtime = int(entry.mtime)
    return attrs


def _status(request_id: int, code: int, message: str = "") -> bytes:
    text = message.encode()
    head = _STATUS.pack(1 + 4 + 4 + 4 + len(text) + 4, CMD_STATUS, request_id, code, len(text))
    return head + text + b"\0\0\0\0"  # empty language tag


def _packet(kind: int, body: bytes) -> bytes:
    return _U32.pack(len(body) + 1) + bytes((kind,)) + body


def _error_code(exc: MailboxError) -> int:
    if isinstance(exc, NoSuchFile):
        return SFTP_NO_SUCH_FILE
    if isinstance(exc, Forbidden):
        return SFTP_PERMISSION_DENIED
    return SFTP_FAILURE


class _Dir:
    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries


class _SFTPSession(paramiko.SubsystemHandler):
    """One SFTP channel: a loop that reads requests and answers them, over one MailboxView."""

    def __init__(self, channel: paramiko.Channel, name: str, server: _SSHServer) -> None:
        super().__init__(channel, name, server)
        self.daemon = True
        self.conn = server.conn
        self.channel = channel
        self.view: MailboxView | None = None
        self.handles: dict[bytes, Any] = {}
        self.max_handles = self.conn.server.settings.sftp_max_handles_per_session
        self._next_handle = 0
        self._buf = bytearray(_READ_BUFFER)
        self._pos = self._end = 0  # unread bytes are _buf[_pos:_end]
        self._out: list[bytes | bytearray | memoryview] = []
        self._out_bytes = 0
        self._spare: list[bytearray] = []  # reply buffers for READ, reused
        self._lent: list[bytearray] = []  # ...and those queued in `_out`

    # -- the loop ------------------------------------------------------------------------------

    def start_subsystem(self, name: str, transport: paramiko.Transport, channel: paramiko.Channel) -> None:
        user = self.conn.user
        if user is None:
            return
        _grow_window(channel, WINDOW_SIZE)  # the channel now has a reader: let the client stream
        try:
            self.view = MailboxView(user, self.conn.server.auth, self.conn.remote_addr, PROTOCOL)
            if not self._handshake():
                return
            while (payload := self._next_packet()) is not None:
                self._handle(payload)
        except EOFError:
            pass
        except (OSError, paramiko.SSHException) as exc:
            log.debug("sftp channel of %s ended: %s", user.name, exc)

    def finish_subsystem(self) -> None:
        # Anything still open when the channel goes: uploads wait for a resume, downloads are closed.
        for handle in list(self.handles.values()):
            with contextlib.suppress(Exception):
                if isinstance(handle, UploadHandle):
                    handle.abandon()
                elif not isinstance(handle, _Dir):
                    handle.close()
        self.handles.clear()
        super().finish_subsystem()

    def _fill(self, n: int) -> bool:
        """Have at least `n` unread bytes in the read buffer; False at the end of the channel.

        One buffer, reused for the whole session: fresh multi-MiB allocations cost page faults.
        """
        avail = self._end - self._pos
        if avail >= n:
            return True
        self._flush()  # about to wait for the client: answer what we have first
        buf = self._buf
        if self._pos + n > len(buf):  # no room for the rest of this packet: move it to the front
            buf[:avail] = buf[self._pos : self._end]
            self._pos, self._end = 0, avail
        while self._end - self._pos < n:
            data = self.channel.recv(min(len(buf) - self._end, _RECV_SIZE))
            if not data:
                return False
            buf[self._end : self._end + len(data)] = data
            self._end += len(data)
        self.conn.touch()
        return True

    def _next_packet(self) -> memoryview | None:
        if not self._fill(4):
            return None
        (size,) = _U32.unpack_from(self._buf, self._pos)
        if size > MAX_MESSAGE + 1024 or size < 5:
            raise EOFError(f"bad SFTP packet length {size}")
        if not self._fill(4 + size):
            return None
        start = self._pos + 4
        self._pos = start + size
        return memoryview(self._buf)[start : start + size]

    def _send(self, data: bytes | bytearray | memoryview) -> None:
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= _RECV_SIZE:
            self._flush()

    def _flush(self) -> None:
        """Send every queued reply: small ones joined into one channel write, big ones as they are."""
        small: list[bytes | bytearray | memoryview] = []
        for item in self._out:
            if len(item) < _JOIN_BELOW:
                small.append(item)
                continue
            if small:
                self._send_now(b"".join(small))
                small.clear()
            self._send_now(item)
        if small:
            self._send_now(b"".join(small))
        self._out.clear()
        self._out_bytes = 0
        # The channel copied every reply into its packets: the READ buffers are free again.
        self._spare.extend(self._lent[: 64 - len(self._spare)])
        self._lent.clear()

    def _send_now(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            sent = self.channel.send(view)
            if sent <= 0:
                raise EOFError("channel closed")
            view = view[sent:]

    def _handshake(self) -> bool:
        payload = self._next_packet()
        if payload is None or payload[0] != CMD_INIT:
            return False
        msg = paramiko.Message()
        msg.add_int(3)
        for name, version in (
            ("posix-rename@openssh.com", "1"),
            ("limits@openssh.com", "1"),
            ("fsync@openssh.com", "1"),
        ):
            msg.add_string(name)
            msg.add_string(version)
        self._send(_packet(CMD_VERSION, msg.asbytes()))
        self._flush()
        self.conn.touch()
        return True

    # -- requests ------------------------------------------------------------------------------

    def _handle(self, payload: memoryview) -> None:
        kind = payload[0]
        (request_id,) = _U32.unpack_from(payload, 1)
        try:
            if kind == CMD_WRITE:
                self._write(request_id, payload)
            elif kind == CMD_READ:
                self._read(request_id, payload)
            else:
                self._other(kind, request_id, paramiko.Message(bytes(payload[5:])))
        except MailboxError as exc:
            if isinstance(exc, Forbidden) and self.view is not None:
                self.view._audit("denied", "", request=kind, reason=str(exc))
            self._send(_status(request_id, _error_code(exc), str(exc)))
        except (struct.error, paramiko.SSHException, IndexError, ValueError, UnicodeDecodeError) as exc:
            self._send(_status(request_id, SFTP_BAD_MESSAGE, f"bad request: {exc}"))
        except OSError as exc:
            log.warning("sftp request %d failed: %s", kind, exc)
            self._send(_status(request_id, SFTP_FAILURE, exc.strerror or "failed"))
        except Exception:  # a bug or the store being down: fail this request, keep the session
            log.exception("sftp request %d failed", kind)
            self._send(_status(request_id, SFTP_FAILURE, "internal error"))

    def _handle_of(self, payload: memoryview, at: int) -> tuple[Any, int]:
        (length,) = _U32.unpack_from(payload, at)
        key = bytes(payload[at + 4 : at + 4 + length])
        handle = self.handles.get(key)
        if handle is None:
            raise MailboxError("invalid handle")
        return handle, at + 4 + length

    def _write(self, request_id: int, payload: memoryview) -> None:
        handle, at = self._handle_of(payload, 5)
        (offset,) = _U64.unpack_from(payload, at)
        (length,) = _U32.unpack_from(payload, at + 8)
        if not isinstance(handle, UploadHandle):
            raise Forbidden("this handle is not open for writing")
        data = payload[at + 12 : at + 12 + length]
        if len(data) != length:
            raise ValueError("truncated WRITE")
        handle.write(data, offset)
        self._send(_status(request_id, SFTP_OK))

    def _read(self, request_id: int, payload: memoryview) -> None:
        handle, at = self._handle_of(payload, 5)
        (offset,) = _U64.unpack_from(payload, at)
        (length,) = _U32.unpack_from(payload, at + 8)
        if isinstance(handle, UploadHandle | _Dir):
            raise Forbidden("this handle is not open for reading")
        # The reply is read straight into its packet (header, then the bytes), in a buffer that is
        # reused once sent: a fresh 255 KiB allocation per request costs page faults, not just a copy.
        reply = self._spare.pop() if self._spare else bytearray(13 + MAX_READ)
        self._lent.append(reply)
        got = handle.preadinto(memoryview(reply)[13 : 13 + min(length, MAX_READ)], offset)
        if not got:
            self._send(_status(request_id, SFTP_EOF, "end of file"))
            return
        _HEAD.pack_into(reply, 0, got + 9, CMD_DATA, request_id)
        _U32.pack_into(reply, 9, got)
        self._send(memoryview(reply)[: 13 + got])

    def _reply(self, kind: int, request_id: int, msg: paramiko.Message | None = None) -> None:
        body = _U32.pack(request_id) + (msg.asbytes() if msg is not None else b"")
        self._send(_packet(kind, body))

    def _room_for_a_handle(self) -> None:
        if len(self.handles) >= self.max_handles:
            raise MailboxError(
                f"too many open handles in this SFTP session (at most {self.max_handles}); close some first"
            )

    def _new_handle(self, request_id: int, handle: Any) -> None:
        if len(self.handles) >= self.max_handles:
            if isinstance(handle, UploadHandle):
                handle.abandon()
            elif not isinstance(handle, _Dir):
                handle.close()
            raise MailboxError(
                f"too many open handles in this SFTP session (at most {self.max_handles}); close some first"
            )
        self._next_handle += 1
        key = b"h%d" % self._next_handle
        self.handles[key] = handle
        msg = paramiko.Message()
        msg.add_string(key)
        self._reply(CMD_HANDLE, request_id, msg)

    def _names(self, request_id: int, entries: list[Entry], longnames: bool = True) -> None:
        msg = paramiko.Message()
        msg.add_int(len(entries))
        for entry in entries:
            attrs = _attrs(entry)
            msg.add_string(entry.name)
            msg.add_string(str(attrs) if longnames else "")
            attrs._pack(msg)
        self._reply(CMD_NAME, request_id, msg)

    def _attrs_reply(self, request_id: int, entry: Entry) -> None:
        msg = paramiko.Message()
        _attrs(entry)._pack(msg)
        self._reply(CMD_ATTRS, request_id, msg)

    def _other(self, kind: int, request_id: int, msg: paramiko.Message) -> None:
        view = self.view
        assert view is not None
        ok = _status(request_id, SFTP_OK)
        if kind == CMD_OPEN:
            path = msg.get_text()
            flags = msg.get_int()
            paramiko.SFTPAttributes._from_msg(msg)  # requested mode/times: not ours to set
            self._open(request_id, view, path, flags)
        elif kind == CMD_CLOSE:
            handle = self.handles.pop(msg.get_binary(), None)
            if handle is None:
                raise MailboxError("invalid handle")
            if isinstance(handle, UploadHandle):
                handle.complete()
            elif not isinstance(handle, _Dir):
                handle.close()
            self._send(ok)
        elif kind in (CMD_STAT, CMD_LSTAT):
            self._attrs_reply(request_id, view.stat(msg.get_text()))
        elif kind == CMD_FSTAT:
            handle = self.handles.get(msg.get_binary())
            if handle is None or isinstance(handle, _Dir):
                raise MailboxError("invalid handle")
            if isinstance(handle, UploadHandle):
                entry = Entry(handle.name, False, handle.size, time.time(), stat_mod.S_IFREG | 0o200)
            else:
                st = os.fstat(handle.fileno())
                entry = Entry(os.path.basename(handle.target), False, st.st_size, st.st_mtime, 0o100644)
            self._attrs_reply(request_id, entry)
        elif kind == CMD_SETSTAT:
            view.stat(msg.get_text())  # times and modes are not kept; succeed where the file exists
            self._send(ok)
        elif kind == CMD_FSETSTAT:
            if msg.get_binary() not in self.handles:
                raise MailboxError("invalid handle")
            self._send(ok)
        elif kind == CMD_OPENDIR:
            self._room_for_a_handle()
            path = msg.get_text()
            if not view.is_dir(path):
                view.stat(path)  # NoSuchFile if it is not there at all
                raise MailboxError(f"{view.normalize(path)} is not a folder")
            self._new_handle(request_id, _Dir(view.listdir(path)))
        elif kind == CMD_READDIR:
            folder = self.handles.get(msg.get_binary())
            if not isinstance(folder, _Dir):
                raise MailboxError("invalid handle")
            if not folder.entries:
                self._send(_status(request_id, SFTP_EOF, "end of folder"))
                return
            batch, folder.entries = folder.entries[:_NAMES_PER_READDIR], folder.entries[_NAMES_PER_READDIR:]
            self._names(request_id, batch)
        elif kind == CMD_REMOVE:
            view.remove(msg.get_text())
            self._send(ok)
        elif kind == CMD_RENAME:
            view.rename(msg.get_text(), msg.get_text())
            self._send(ok)
        elif kind == CMD_MKDIR:
            view.mkdir(msg.get_text())
            self._send(ok)
        elif kind == CMD_RMDIR:
            view.rmdir(msg.get_text())
            self._send(ok)
        elif kind == CMD_REALPATH:
            path = view.normalize(msg.get_text() or ".")
            self._names(request_id, [Entry(path, True, 0, 0.0, 0)], longnames=False)
        elif kind == CMD_READLINK:
            view.stat(msg.get_text())
            raise MailboxError("not a symbolic link")
        elif kind == CMD_SYMLINK:
            raise Forbidden("symbolic links cannot be created in a mailbox")
        elif kind == CMD_EXTENDED:
            self._extended(request_id, view, msg.get_text(), msg)
        else:
            self._send(_status(request_id, SFTP_OP_UNSUPPORTED, "not supported"))

    def _open(self, request_id: int, view: MailboxView, path: str, flags: int) -> None:
        self._room_for_a_handle()
        if not flags & SFTP_FLAG_WRITE:
            if not flags & SFTP_FLAG_READ:
                raise MailboxError("open for neither reading nor writing")
            self._new_handle(request_id, view.open_read(path))
            return
        if flags & SFTP_FLAG_CREATE and flags & SFTP_FLAG_EXCL:
            with contextlib.suppress(NoSuchFile):
                view.stat(path)
                raise MailboxError(f"{view.normalize(path)} already exists")
        if flags & SFTP_FLAG_APPEND:
            handle = view.open_upload(path, append=True)
        elif flags & SFTP_FLAG_TRUNC:
            handle = view.open_upload(path, offset=0)
        else:  # no TRUNC: the client may be resuming; its first write says from where
            handle = view.open_upload(path, offset=None)
        self._new_handle(request_id, handle)

    def _extended(self, request_id: int, view: MailboxView, name: str, msg: paramiko.Message) -> None:
        if name == "limits@openssh.com":
            reply = paramiko.Message()
            reply.add_int64(MAX_MESSAGE)
            reply.add_int64(MAX_READ)
            reply.add_int64(MAX_WRITE)
            reply.add_int64(self.max_handles)
            self._reply(CMD_EXTENDED_REPLY, request_id, reply)
        elif name == "posix-rename@openssh.com":
            view.rename(msg.get_text(), msg.get_text())
            self._send(_status(request_id, SFTP_OK))
        elif name == "fsync@openssh.com":
            handle = self.handles.get(msg.get_binary())
            if handle is None or isinstance(handle, _Dir):
                raise MailboxError("invalid handle")
            self._send(_status(request_id, SFTP_OK))  # completed uploads are made durable by intake
        else:
            self._send(_status(request_id, SFTP_OP_UNSUPPORTED, f"{name} is not supported"))


# --- the server -------------------------------------------------------------------------------


class SFTPServer:
    """Listens for SFTP clients; `start()` returns once listening, `stop()` ends every session."""

    def __init__(self, settings: Settings, auth: MailboxAuth) -> None:
        self.settings = settings
        self.auth = auth
        self.host = settings.host
        self.port = settings.sftp_port
        self.idle_timeout = settings.idle_timeout_seconds
        self.login_grace = settings.login_grace_seconds
        self.startups = settings.startups
        self.host_keys = load_host_keys(settings.home_dir)
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        sock = socket.create_server((self.host, self.port), backlog=128, reuse_port=False)
        sock.settimeout(0.5)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stopping.clear()
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        for target, name in ((self._accept_loop, "sftp-accept"), (self._reap_loop, "sftp-idle")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("SFTP server listening on %s:%d", self.host, self.port)

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        for thread in self._threads:
            thread.join(5)
        self._threads.clear()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.transport.close()
        for conn in connections:
            conn.transport.join(5)
            conn.finish()

    def __enter__(self) -> SFTPServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                client, address = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            refusal = self._refusal(address[0])
            if refusal is not None:
                self._turn_away(client, address[0], refusal)
                continue
            try:
                self._serve(client, address[0])
            except Exception:
                log.exception("could not start an SFTP session for %s", address[0])
                with contextlib.suppress(OSError):
                    client.close()

    def _refusal(self, remote_addr: str) -> str | None:
        """Why a new connection from `remote_addr` is turned away, before it costs a thread; or None.

        Caps of 0 are off.
        """
        total, per_address = (
            self.settings.mailbox_max_connections,
            self.settings.mailbox_max_connections_per_address,
        )
        with self._lock:
            connections = list(self._connections)
        if total and len(connections) >= total:
            return f"too many connections ({total})"
        if per_address and sum(c.remote_addr == remote_addr for c in connections) >= per_address:
            return f"too many connections from {remote_addr} ({per_address})"
        pending_here = sum(
            not c.transport.is_authenticated() for c in connections if c.remote_addr == remote_addr
        )
        per_source = self.settings.sftp_max_startups_per_address
        if per_source and pending_here >= per_source:
            return f"too many connections from {remote_addr} not logged in yet ({per_source})"
        pending = sum(not c.transport.is_authenticated() for c in connections)
        if self.startups.refuse(pending):
            return f"too many connections not logged in yet ({pending}; MaxStartups {self.startups})"
        return None

    @staticmethod
    def _turn_away(client: socket.socket, remote_addr: str, why: str) -> None:
        log.info("SFTP connection from %s refused: %s", remote_addr, why)
        # Before the SSH version line a server may send text lines (RFC 4253 4.2): say why.
        with contextlib.suppress(OSError):
            client.settimeout(1)
            client.sendall(f"Connection refused: {why}; try again later.\r\n".encode())
        with contextlib.suppress(OSError):
            client.close()

    def _serve(self, client: socket.socket, remote_addr: str) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = _Transport(
            _BufferedSocket(client),  # type: ignore[arg-type]
            default_window_size=OPEN_WINDOW,  # grown to WINDOW_SIZE when the sftp subsystem starts
            default_max_packet_size=MAX_PACKET_SIZE,
        )
        transport.local_version = SERVER_VERSION
        transport.banner_timeout = transport.handshake_timeout = 30
        transport.auth_timeout = 60
        for key in self.host_keys:
            transport.add_server_key(key)
        conn = _Connection(self, transport, remote_addr)
        transport.set_subsystem_handler("sftp", _SFTPSession)

        def finished() -> None:
            conn.finish()
            with self._lock:
                self._connections.discard(conn)

        transport.on_finish = finished
        with self._lock:
            self._connections.add(conn)
        transport.start_server(event=threading.Event(), server=_SSHServer(conn))

    def _reap_loop(self) -> None:
        """Close connections idle for longer than the idle timeout (no SFTP request, no data),
        and those not logged in within the login grace time."""
        interval = max(0.05, min(1.0, self.idle_timeout / 4, self.login_grace / 4))
        while not self._stopping.wait(interval):
            now = time.monotonic()
            with self._lock:
                late = [
                    c
                    for c in self._connections
                    if now - c.connected_at > self.login_grace and not c.transport.is_authenticated()
                ]
                idle = [c for c in self._connections if now - c.last_activity > self.idle_timeout]
            for conn in late:
                log.info(
                    "closing SFTP connection from %s: not logged in within %.0fs",
                    conn.remote_addr,
                    self.login_grace,
                )
                conn.connected_at = float("inf")  # once
                conn.transport.close()
            for conn in idle:
                if conn.user is not None:
                    with contextlib.suppress(Exception):
                        self.auth.record(conn.user, "session.idle", "/", conn.remote_addr, protocol=PROTOCOL)
                log.info("closing idle SFTP connection from %s", conn.remote_addr)
                conn.touch()  # once
                conn.transport.close()
