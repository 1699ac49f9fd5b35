"""Reading and writing one file over SFTP with IN_FLIGHT bytes of requests outstanding on its
handle, every answer collected by the stream that asked (see core/endpoints/sftp.py)."""

from __future__ import annotations

import io
from collections import deque
from typing import TYPE_CHECKING, Any

import paramiko
from paramiko.sftp import (
    CMD_DATA,
    CMD_READ,
    CMD_STATUS,
    CMD_WRITE,
    int64,
)

from core.endpoints.base import (
    OnConflict,
    WriteStream,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from core.endpoints.sftp import SftpEndpoint

# 32 KiB is the data size every SFTP server must accept (larger writes can kill the session);
# servers that publish their limits (OpenSSH 8.6+: limits@openssh.com) get up to MAX_REQUEST_SIZE.
REQUEST_SIZE = 32768
MAX_REQUEST_SIZE = 128 * 1024
# Bytes in flight per stream: what keeps a long link busy, and what bounds a read's memory.
# 2 MiB is what OpenSSH's sftp keeps in flight by default (64 requests of 32 KiB), and also
# the send window sshd grants, so more would not speed up uploads anyway.
IN_FLIGHT = 2 * 1024 * 1024


class Responses:
    """Collects the answers to one stream's asynchronous requests, whoever reads them."""

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self._sftp = sftp
        self.answers: dict[int, tuple[int, paramiko.Message]] = {}

    # Called by paramiko from `_read_response` for every answer to a request we made.
    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        self.answers[num] = (kind, msg)

    def request(self, kind: int, *args: Any) -> int:
        num: int = self._sftp._async_request(self, kind, *args)
        return num

    def wait(self, num: int) -> tuple[int, paramiko.Message]:
        while num not in self.answers:
            self._sftp._read_response()
        return self.answers.pop(num)


class SftpReader(io.RawIOBase):
    """Reads a remote file with up to IN_FLIGHT bytes of read requests outstanding."""

    def __init__(self, endpoint: SftpEndpoint, handle: paramiko.SFTPFile, size: int, what: str) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._file = handle
        self._size = size  # as stat'ed at open; reading goes on until the server says EOF
        self._what = what
        self._responses = Responses(handle.sftp)
        self._request_size = endpoint.read_size
        self._depth = max(2, IN_FLIGHT // self._request_size)
        self._pending: deque[tuple[int, int, int]] = deque()  # (request, offset, length)
        self._requested = 0  # offset of the next read request to send
        self._offset = 0  # offset of the next byte the caller gets
        self._chunk = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        if not self._chunk and not self._eof:
            with self._endpoint.errors(self._what, self._file.sftp):
                self._chunk = memoryview(self._next_chunk())
            self._eof = not self._chunk
        n = min(len(view), len(self._chunk))
        view[:n] = self._chunk[:n]
        self._chunk = self._chunk[n:]
        return n

    def _next_chunk(self) -> bytes:
        handle = self._file.handle
        while len(self._pending) < self._depth and self._requested < self._size:
            length = min(self._request_size, self._size - self._requested)
            num = self._responses.request(CMD_READ, handle, int64(self._requested), int(length))
            self._pending.append((num, self._requested, length))
            self._requested += length
        if not self._pending:
            # Past the size seen at open: the file may have grown, so read on until EOF.
            data = self._read_at(self._offset, self._request_size)
            self._offset += len(data)
            self._requested = self._offset
            return data
        num, offset, length = self._pending.popleft()
        data = self._answer(num)
        # A server may answer short of EOF (many cap a read); fetch the gap before going on,
        # and ask for no more than it gives from now on.
        if REQUEST_SIZE <= len(data) < length:
            self._request_size = min(self._request_size, len(data))
            self._depth = max(2, IN_FLIGHT // self._request_size)
        while data and len(data) < length:
            more = self._read_at(offset + len(data), length - len(data))
            if not more:
                break
            data += more
        if len(data) < length:  # the file shrank while we read it: stop here
            self._pending.clear()
            self._size = self._requested = offset + len(data)
        self._offset = offset + len(data)
        return data

    def _answer(self, num: int) -> bytes:
        kind, msg = self._responses.wait(num)
        if kind == CMD_STATUS:
            try:
                self._file.sftp._convert_status(msg)
            except EOFError:
                return b""
        if kind != CMD_DATA:
            raise paramiko.SFTPError(f"expected data, got SFTP message {kind}")
        data: bytes = msg.get_string()
        return data

    def _read_at(self, offset: int, length: int) -> bytes:
        return self._answer(self._responses.request(CMD_READ, self._file.handle, int64(offset), int(length)))

    def close(self) -> None:
        if not self.closed:
            self._endpoint.close_handle(self._file, self._responses)
            self._pending.clear()
            self._chunk = memoryview(b"")
        super().close()


class SftpWriteStream(WriteStream):
    """Writes to a temporary file with up to IN_FLIGHT bytes of writes outstanding; rename on commit."""

    def __init__(
        self,
        endpoint: SftpEndpoint,
        handle: paramiko.SFTPFile,
        temp: str,
        target: str,
        what: str,
        placement: tuple[str, OnConflict] | None = None,
    ) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._file = handle
        self.temp = temp
        self.target = target
        self._what = what
        self._placement = placement  # (relative path, rename|fail) when a file there must stay
        self._responses = Responses(handle.sftp)
        self._request_size = endpoint.write_size
        self._depth = max(2, IN_FLIGHT // self._request_size)
        self._pending: deque[int] = deque()
        self._buffer = bytearray()
        self._offset = 0

    def _write(self, data: bytes) -> None:
        view, size = memoryview(data), self._request_size
        with self._endpoint.errors(self._what, self._file.sftp):
            if self._buffer:
                room = size - len(self._buffer)
                self._buffer += view[:room]
                view = view[room:]
                if len(self._buffer) < size:
                    return
                self._send(bytes(self._buffer))
                self._buffer.clear()
            while len(view) >= size:
                self._send(bytes(view[:size]))
                view = view[size:]
            self._buffer += view

    def _send(self, chunk: bytes) -> None:
        num = self._responses.request(CMD_WRITE, self._file.handle, int64(self._offset), chunk)
        self._pending.append(num)
        self._offset += len(chunk)
        while len(self._pending) >= self._depth:
            self._reap()

    def _reap(self) -> None:
        kind, msg = self._responses.wait(self._pending.popleft())
        if kind != CMD_STATUS:
            raise paramiko.SFTPError(f"expected a status, got SFTP message {kind}")
        self._file.sftp._convert_status(msg)

    def _commit(self) -> None:
        with self._endpoint.errors(self._what, self._file.sftp):
            if self._buffer:
                self._send(bytes(self._buffer))
                self._buffer.clear()
            while self._pending:
                self._reap()
            self._file.close()
        if self.temp == self.target:  # temp_name "none" wrote the final (already free) name
            return
        if self._placement is not None:
            self.path = self._endpoint.rename_new(self.temp, *self._placement, self._what)
            return
        self._endpoint.rename_over(self.temp, self.target, self._what)

    def _abort(self) -> None:
        self._buffer.clear()
        self._endpoint.close_handle(self._file, self._responses)
        self._pending.clear()
        self._endpoint.discard(self.temp)
