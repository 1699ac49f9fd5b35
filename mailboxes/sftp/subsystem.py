"""The SFTP subsystem: a request loop over one `MailboxView`, fast where it matters (WRITE, READ)."""

from __future__ import annotations

import contextlib
import logging
import os
import stat as stat_mod
import struct
import time
from typing import Any

import paramiko
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
    SFTP_OK,
    SFTP_OP_UNSUPPORTED,
)

from core.mailbox.user_view import view_for
from core.mailbox.view import Entry, Forbidden, MailboxError, MailboxView, NoSuchFile, UploadHandle
from mailboxes.sftp.auth import SSHServer
from mailboxes.sftp.channels import WINDOW_SIZE, grow_window
from mailboxes.sftp.connection import PROTOCOL
from mailboxes.sftp.fastpath import send_all
from mailboxes.sftp.packets import (
    HEAD,
    MAX_MESSAGE,
    MAX_READ,
    MAX_WRITE,
    U32,
    U64,
    attrs_of,
    error_code,
    packet,
    status,
)

log = logging.getLogger(__name__)

_RECV_SIZE = 1024 * 1024
_READ_BUFFER = 4 * 1024 * 1024  # > 2 SFTP messages, and room to read ahead
_JOIN_BELOW = 64 * 1024
_NAMES_PER_READDIR = 100


class _Dir:
    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries


class SFTPSession(paramiko.SubsystemHandler):  # type: ignore[misc]  # paramiko ships no type hints
    """One SFTP channel: a loop that reads requests and answers them, over one MailboxView."""

    def __init__(self, channel: paramiko.Channel, name: str, server: SSHServer) -> None:
        super().__init__(channel, name, server)
        self.daemon = True
        self.conn = server.conn
        self.channel = channel
        self.view: MailboxView | None = None
        self.handles: dict[bytes, Any] = {}
        self.max_handles = self.conn.settings.sftp_max_handles_per_session
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
        grow_window(channel, WINDOW_SIZE)  # the channel now has a reader: let the client stream
        try:
            self.view = view_for(user, self.conn.auth, self.conn.remote_addr, PROTOCOL)
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
        (size,) = U32.unpack_from(self._buf, self._pos)
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
        send_all(self.channel, memoryview(data))

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
        self._send(packet(CMD_VERSION, msg.asbytes()))
        self._flush()
        self.conn.touch()
        return True

    # -- requests ------------------------------------------------------------------------------

    def _handle(self, payload: memoryview) -> None:
        kind = payload[0]
        (request_id,) = U32.unpack_from(payload, 1)
        try:
            if kind == CMD_WRITE:
                self._write(request_id, payload)
            elif kind == CMD_READ:
                self._read(request_id, payload)
            else:
                self._other(kind, request_id, paramiko.Message(bytes(payload[5:])))
        except MailboxError as exc:
            if isinstance(exc, Forbidden) and self.view is not None:
                self.view.audit("denied", "", request=kind, reason=str(exc))
            self._send(status(request_id, error_code(exc), str(exc)))
        except (struct.error, paramiko.SSHException, IndexError, ValueError, UnicodeDecodeError) as exc:
            self._send(status(request_id, SFTP_BAD_MESSAGE, f"bad request: {exc}"))
        except OSError as exc:
            log.warning("sftp request %d failed: %s", kind, exc)
            self._send(status(request_id, SFTP_FAILURE, exc.strerror or "failed"))
        except Exception:  # a bug or the store being down: fail this request, keep the session
            log.exception("sftp request %d failed", kind)
            self._send(status(request_id, SFTP_FAILURE, "internal error"))

    def _handle_of(self, payload: memoryview, at: int) -> tuple[Any, int]:
        (length,) = U32.unpack_from(payload, at)
        key = bytes(payload[at + 4 : at + 4 + length])
        handle = self.handles.get(key)
        if handle is None:
            raise MailboxError("invalid handle")
        return handle, at + 4 + length

    def _write(self, request_id: int, payload: memoryview) -> None:
        handle, at = self._handle_of(payload, 5)
        (offset,) = U64.unpack_from(payload, at)
        (length,) = U32.unpack_from(payload, at + 8)
        if not isinstance(handle, UploadHandle):
            raise Forbidden("this handle is not open for writing")
        data = payload[at + 12 : at + 12 + length]
        if len(data) != length:
            raise ValueError("truncated WRITE")
        handle.write(data, offset)
        self._send(status(request_id, SFTP_OK))

    def _read(self, request_id: int, payload: memoryview) -> None:
        handle, at = self._handle_of(payload, 5)
        (offset,) = U64.unpack_from(payload, at)
        (length,) = U32.unpack_from(payload, at + 8)
        if isinstance(handle, UploadHandle | _Dir):
            raise Forbidden("this handle is not open for reading")
        # The reply is read straight into its packet (header, then the bytes), in a buffer that is
        # reused once sent: a fresh 255 KiB allocation per request costs page faults, not just a copy.
        reply = self._spare.pop() if self._spare else bytearray(13 + MAX_READ)
        self._lent.append(reply)
        got = handle.preadinto(memoryview(reply)[13 : 13 + min(length, MAX_READ)], offset)
        if not got:
            self._send(status(request_id, SFTP_EOF, "end of file"))
            return
        HEAD.pack_into(reply, 0, got + 9, CMD_DATA, request_id)
        U32.pack_into(reply, 9, got)
        self._send(memoryview(reply)[: 13 + got])

    def _reply(self, kind: int, request_id: int, msg: paramiko.Message | None = None) -> None:
        body = U32.pack(request_id) + (msg.asbytes() if msg is not None else b"")
        self._send(packet(kind, body))

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
            attrs = attrs_of(entry)
            msg.add_string(entry.name)
            msg.add_string(str(attrs) if longnames else "")
            attrs._pack(msg)
        self._reply(CMD_NAME, request_id, msg)

    def _attrs_reply(self, request_id: int, entry: Entry) -> None:
        msg = paramiko.Message()
        attrs_of(entry)._pack(msg)
        self._reply(CMD_ATTRS, request_id, msg)

    def _other(self, kind: int, request_id: int, msg: paramiko.Message) -> None:
        view = self.view
        assert view is not None
        ok = status(request_id, SFTP_OK)
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
                self._send(status(request_id, SFTP_EOF, "end of folder"))
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
            self._send(status(request_id, SFTP_OP_UNSUPPORTED, "not supported"))

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
            self._send(status(request_id, SFTP_OK))
        elif name == "fsync@openssh.com":
            handle = self.handles.get(msg.get_binary())
            if handle is None or isinstance(handle, _Dir):
                raise MailboxError("invalid handle")
            self._send(status(request_id, SFTP_OK))  # completed uploads are made durable by intake
        else:
            self._send(status(request_id, SFTP_OP_UNSUPPORTED, f"{name} is not supported"))
