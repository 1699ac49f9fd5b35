"""An FTP upload as pyftpdlib's data channel writes it: a writer thread over a staged upload."""

from __future__ import annotations

import errno
import logging
import queue
import threading
from pathlib import Path
from typing import Any

from core.intake import IntakeError
from core.mailbox.view import MailboxError, QuotaExceeded
from core.writeback import PathWriteback

log = logging.getLogger(__name__)


class UploadRefused(OSError):
    """Raised through pyftpdlib's data channel when the view refuses a chunk (size limit, ...)."""


class UploadFile:
    """What pyftpdlib's data channel writes an upload into: a `MailboxView` upload handle.

    The session thread only receives: chunks go through a short queue to a writer thread that
    does the disk write and the SHA-256 (both release the GIL), so receiving, writing and hashing
    overlap, and the writer asks the kernel to start writing back what it wrote so the fsync at
    completion has little left to do.

    Exactly one of `complete()` (intake) or `abandon()` happens; `close()` abandons unless the
    upload was completed, so every way out of pyftpdlib (closed session, queued STOR that never got
    a data connection, errors) leaves nothing visible and triggers nothing.
    """

    pipelined = True
    queue_chunks = 32

    def __init__(self, handle: Any, path: str, offset: int) -> None:
        self.handle = handle
        self.name = path
        self.offset = offset
        self.received = 0
        self.error: MailboxError | IntakeError | None = None
        self.reason: str | None = None
        self.receipt: Any = None
        self.finished = False
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.queue_chunks)
        self._writer: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self.finished

    def write(self, data: bytes) -> int:
        if self._failure is not None:
            self._raise_refused()
        if not self.pipelined:
            self._write_now(data)
            self.received += len(data)
            return len(data)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="ftp-upload-writer", daemon=True)
            self._writer.start()
        self._queue.put(data)
        self.received += len(data)
        return len(data)

    def _write_now(self, data: bytes) -> None:
        try:
            self.handle.write(data)
        except BaseException as exc:
            self._failure = exc
            self._raise_refused()

    def _raise_refused(self) -> None:
        exc = self._failure
        if isinstance(exc, MailboxError | IntakeError):
            self.error = exc
            code = errno.EFBIG if isinstance(exc, QuotaExceeded) else errno.EIO
            raise UploadRefused(code, str(exc)) from exc
        raise UploadRefused(errno.EIO, f"write failed: {exc}") from exc

    def _write_loop(self) -> None:
        hint = writeback_hint(self.handle)
        try:
            while (chunk := self._queue.get()) is not None:
                if self._failure is not None:
                    continue  # drain, so the receiving side never blocks on a full queue
                try:
                    self.handle.write(chunk)
                except BaseException as exc:
                    self._failure = exc
                    continue
                if hint is not None:
                    hint.wrote(len(chunk))
        finally:
            if hint is not None:
                hint.close()

    def _drain(self) -> None:
        """Wait until everything received is written (or refused)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()

    def complete(self) -> Any:
        """Hand the finished file to intake: receipt, pending transfers, dispatch."""
        self._drain()
        if self._failure is not None:
            failure = self._failure
            self.abandon(str(failure))
            if isinstance(failure, MailboxError | IntakeError):
                self.error = failure
            raise failure
        self.finished = True
        self.receipt = self.handle.complete()
        return self.receipt

    def abandon(self, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.reason = reason
        self._drain()  # what arrived is kept for a resume
        try:
            self.handle.abandon()
        except Exception:
            log.exception("abandoning FTP upload %s failed", self.name)

    def close(self) -> None:
        self.abandon(self.reason or "the session ended before the upload finished")


def writeback_hint(handle: Any) -> PathWriteback | None:
    """Early writeback (core/writeback.py) of the file the handle stages the upload in, if any."""
    staged = getattr(handle, "staged", None)
    if staged is None:
        return None
    try:
        return PathWriteback(Path(staged))
    except OSError:
        return None
