"""Disk spools for AS2 messages and files to send: bytes stream to disk with a size cap first; a
large one is then read in pieces (core.as2.bigsend, core.as2.bigreceive), a small one whole."""

from __future__ import annotations

import os
import tempfile
from typing import IO

from core.as2.settings import spool_root


class MessageTooLarge(Exception):
    """An AS2 message (or payload to send) is larger than TRADELANE_AS2_MAX_MESSAGE_BYTES."""

    def __init__(self, limit: int, what: str = "AS2 message", *, in_memory: bool = False) -> None:
        if in_memory:
            text = (
                f"{what} is larger than {limit} bytes (TRADELANE_AS2_MAX_IN_MEMORY_BYTES) and of a shape "
                "processed in memory (compressed, a cipher other than AES, or not binary); large "
                "messages stream only when binary, uncompressed and AES-encrypted or unencrypted"
            )
        else:
            text = f"{what} is larger than the limit of {limit} bytes (TRADELANE_AS2_MAX_MESSAGE_BYTES)"
        super().__init__(text)
        self.limit = limit


class Spool:
    """An anonymous temporary file under the AS2 spool directory, with a byte limit.

    The file has no name (it vanishes when closed, even after a crash), so an aborted or
    oversized message leaves nothing behind.
    """

    def __init__(self, limit: int, what: str = "AS2 message") -> None:
        self.limit = limit
        self.what = what
        self.size = 0
        directory = os.path.join(spool_root(), "tmp")
        os.makedirs(directory, exist_ok=True)
        self._file: IO[bytes] = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (see close())

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.limit:
            raise MessageTooLarge(self.limit, self.what)
        self._file.write(chunk)
        self.size += len(chunk)

    @property
    def file(self) -> IO[bytes]:
        """The spool file (flushed), for reading it in pieces."""
        self._file.flush()
        return self._file

    def read_all(self) -> bytes:
        """The whole spool (bounded by `limit`), for pyas2lib."""
        self._file.flush()
        self._file.seek(0)
        return self._file.read()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
