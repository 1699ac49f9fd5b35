"""A file another program writes by its name (`gpg --output FILE`), hashed as it grows.

A program that writes its output file itself spares every byte a trip through a pipe and Python.
Its output is still hashed as it comes: a thread follows the file (positioned reads of what has
been written so far, from the page cache) on a core of its own (hashlib lets go of the GIL), so
the SHA-256 is ready moments after the program exits, and it is the hash of the file's own bytes.
Past `limit` bytes the program is stopped (`on_limit`): a small input that inflates without end
(a compression bomb) costs neither the disk nor the time, whatever the program does meanwhile.

    growing = GrowingFile(path, fd)            # the file created, empty, `fd` open on it
    growing.follow(limit, on_limit=stop_it)    # before the program starts
    ...run the program writing `path`...
    size, sha256 = growing.finish()           # after it exited
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

# Bytes read at a time: large reads keep the thread's share of system calls small.
READ_SIZE = 4 * 1024 * 1024
# How long the thread waits when it has caught up with the writer before looking again.
POLL_SECONDS = 0.002


class ReplacedError(OSError):
    """The file at the path is no longer the one followed (the program replaced it)."""


class GrowingFile:
    """The file at `path`, open as `fd` (readable), followed and hashed while a program writes it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = 0
        self.over_limit = False
        self._sha = hashlib.sha256()
        self._limit: int | None = None
        self._on_limit: Callable[[], None] = lambda: None
        self._written = threading.Event()  # the program has exited: read to the end, then stop
        self._failure: OSError | None = None
        self._thread: threading.Thread | None = None
        self._result: tuple[int, str] | None = None
        self._stopped = False

    def follow(self, limit: int | None = None, on_limit: Callable[[], None] = lambda: None) -> None:
        """Start hashing the file as it grows; past `limit` bytes call `on_limit` (stop the writer)."""
        if self._thread is not None:
            raise RuntimeError("already followed")
        self._limit, self._on_limit = limit, on_limit
        self._thread = threading.Thread(target=self._run, name="growing-file-hash", daemon=True)
        self._thread.start()

    def finish(self) -> tuple[int, str]:
        """Size and SHA-256 of the whole file, once the program that wrote it has exited.

        Raises ReplacedError if the path now names another file than the one followed, and the
        OSError a read met. After `over_limit`, the size is where the hashing stopped."""
        if self._result is not None:
            return self._result
        if self._thread is None:
            self.follow()
        assert self._thread is not None
        self._written.set()
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            raise ReplacedError(f"{self.path} was removed while it was written") from None
        followed = os.fstat(self.fd)
        if (named.st_dev, named.st_ino) != (followed.st_dev, followed.st_ino):
            raise ReplacedError(f"{self.path} was replaced while it was written")
        if not self.over_limit and followed.st_size != self.size:
            raise ReplacedError(f"{self.path} changed size after it was written")
        self._result = (self.size, self._sha.hexdigest())
        return self._result

    def stop(self) -> None:
        """Stop following (the write failed): the thread ends without reading further."""
        self._stopped = True
        self._written.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        try:
            while not self._stopped:
                # Seen before the read: once the writer has exited, one more read reaches the end.
                written = self._written.is_set()
                if self._limit is not None and os.fstat(self.fd).st_size > self._limit:
                    self._passed_limit()
                    return
                n = os.preadv(self.fd, [buffer], self.size)
                if n:
                    self._sha.update(view[:n])
                    self.size += n
                elif written:
                    return
                else:
                    self._written.wait(POLL_SECONDS)
        except OSError as exc:
            self._failure = exc

    def _passed_limit(self) -> None:
        self.over_limit = True
        self._on_limit()
