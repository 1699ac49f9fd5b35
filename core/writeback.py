"""Early writeback: start writing a file's bytes to the disk as they are written, not at the fsync.

Linux starts writeback on its own only after 30 s or past `dirty_background_ratio` (gigabytes on
a machine with much memory), so a file written whole and then fsynced waits at the fsync for all
of it. Asking for the writeback every `EVERY` bytes (`sync_file_range(SYNC_FILE_RANGE_WRITE)`:
start it, don't wait) lets the disk work while the rest arrives, and the fsync that makes the
file durable finds little left. It is only a hint: durability still comes from that fsync.
Elsewhere than on Linux (or without the call) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path
from typing import Any

EVERY = 32 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2

_libc: Any = None


def _sync_file_range() -> Any:
    """libc's sync_file_range, or None where there is none."""
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        except (OSError, AttributeError):
            _libc = False
            return None
        _libc = libc
    return _libc.sync_file_range if _libc else None


class Writeback:
    """Counts the bytes written to `fd` in order, and starts the writeback of each `EVERY` of them."""

    def __init__(self, fd: int, every: int = EVERY) -> None:
        self.fd = fd
        self.every = every
        self.written = self.started = 0
        self._call = _sync_file_range()

    def wrote(self, count: int) -> None:
        self.written += count
        if self._call is not None and self.written - self.started >= self.every:
            # Ctypes releases the GIL for the call; its errors (EIO...) are left to the fsync to report.
            self._call(
                self.fd,
                ctypes.c_int64(self.started),
                ctypes.c_int64(self.written - self.started),
                _SYNC_FILE_RANGE_WRITE,
            )
            self.started = self.written


class PathWriteback(Writeback):
    """`Writeback` on a file someone else writes (by its path): its own descriptor, closed by `close`."""

    def __init__(self, path: Path, every: int = EVERY) -> None:
        super().__init__(os.open(path, os.O_RDONLY | os.O_CLOEXEC), every)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
