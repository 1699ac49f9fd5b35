"""The socket as paramiko reads it: one `recv_into` serves many of its small reads."""

from __future__ import annotations

import socket
from typing import Any

_DIRECT_RECV = 16 * 1024


class BufferedSocket:
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

    def recv_into(self, view: memoryview) -> int:
        """Fill `view` from what is buffered, else straight from the socket (a big read)."""
        if self._start == self._end:
            return self._sock.recv_into(view)
        take = min(len(view), self._end - self._start)
        view[:take] = self._view[self._start : self._start + take]
        self._start += take
        return take

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
