"""A background thread that sweeps the store now and then, or at once when woken.

The AS2 worker (resends, async MDNs) and the peer worker (revoke notices, state checks) are each one
of these: the store is their queue, so a sweep that fails (the database briefly unavailable) is
logged and simply tried again at the next one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class SweepThread:
    """Runs `sweep()` every `interval()` seconds (read each time, so a setting can change it), or at
    once after `wake()`; `stop()` ends it (and `start()` may begin it again)."""

    def __init__(self, name: str, sweep: Callable[[], object], interval: Callable[[], float]) -> None:
        self.name = name
        self._sweep = sweep
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._sweep()
            except Exception:  # the database may be briefly unavailable; try again next sweep
                log.exception("%s: a sweep failed", self.name)
            self._wake.wait(self._interval())
