"""Uploading the parts of one write in the background, a few at a time.

S3 multipart uploads and Azure block lists take their parts in any order, so a write stream can
hand each full part to `PartUploads` and go on filling the next one while earlier parts are on
the wire. At most `limit` parts are in flight: `submit` waits for a free slot, so memory stays at
(limit + 1) parts whatever the file's size.

A part's failure is raised by the caller's next `submit`/`raise_failure` or by `finish`, so it
surfaces on the next write or at commit. `cancel` waits for the parts still in flight instead of
abandoning them: S3 can keep a part that lands after its upload was aborted, and an abort that
returned while threads still held buffers would not be an abort. The wait is bounded by the
clients' own timeouts and retries.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 16


class PartUploads:
    """Runs part uploads on up to `limit` threads, created on the first part (small files need none)."""

    def __init__(self, limit: int, name: str) -> None:
        self._limit = limit
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._running: list[Future[None]] = []
        self._failure: BaseException | None = None

    @property
    def started(self) -> bool:
        return self._executor is not None

    def submit(self, upload: Callable[[], None]) -> None:
        """Start `upload` once a slot is free; raises the first failure of an earlier part."""
        self._reap(block=False)
        while len(self._running) >= self._limit:
            self._reap(block=True)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self._limit, thread_name_prefix=self._name)
        self._running.append(self._executor.submit(upload))

    def raise_failure(self) -> None:
        """Raise the first failure of a part that has already finished, if any."""
        self._reap(block=False)

    def finish(self) -> None:
        """Wait for every part; raises the first failure. Call once, before completing the upload."""
        try:
            while self._running:
                self._reap(block=True)
        finally:
            self._shutdown()

    def cancel(self) -> None:
        """Wait for the parts in flight, ignoring their failures: nothing runs after this returns."""
        wait(self._running)  # a part's own failure is not raised here, only returned
        self._running = []
        self._shutdown()

    def _reap(self, *, block: bool) -> None:
        if block and self._running:
            wait(self._running, return_when=FIRST_COMPLETED)
        for future in [f for f in self._running if f.done()]:
            self._running.remove(future)
            error = future.exception()
            if error is not None and self._failure is None:
                self._failure = error
        if self._failure is not None:
            raise self._failure

    def _shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
