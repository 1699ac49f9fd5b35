"""The Prefect server saying where it was stuck, when it was stuck for seconds.

Every client of tradelane's Prefect server (the dispatcher, the workers, the CLI, the UI) waits
while the server cannot answer, and nothing says why. Two things make it so, and each is logged as
a warning naming where the server was, once it lasted STALL_SECONDS:

* its event loop not turning (a call that blocks the thread): the loop thread's stack, from a
  watchdog thread, once per stall, and how long the stall lasted when the loop turns again;
* a write transaction that took that long, waiting for SQLite's lock or holding it (writers
  queue behind one another): when and where it was begun.

Both cost nothing while all is well: the watchdog wakes the loop once a second; a transaction
reads the clock twice.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from datetime import datetime, timedelta
from types import FrameType

from prefect.logging import get_logger

STALL_SECONDS = 5.0
BEAT_SECONDS = 1.0

log = get_logger("tradelane.stalls")


# Frames that say nothing about what was slow: the machinery between a call and its caller.
_PLUMBING = ("/contextlib.py", "/asyncio/", "/starlette/", "/fastapi/", "/anyio/", "/uvicorn/")


def where(frame: FrameType | None, limit: int = 10) -> str:
    """The innermost frames of a stack that are not plumbing, innermost first, on one line."""
    frames = [f for f in traceback.extract_stack(frame) if not any(p in f.filename for p in _PLUMBING)]
    return " <- ".join(f"{f.name} ({_short(f.filename)}:{f.lineno})" for f in reversed(frames[-limit:]))


def _short(filename: str) -> str:
    return "/".join(filename.rsplit("/", 2)[-2:])  # package/module.py


class LoopWatchdog:
    """A thread that notices `loop` not running its callbacks for `threshold` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float | None = None) -> None:
        self.loop = loop
        self.threshold = STALL_SECONDS if threshold is None else threshold
        self.beat_seconds = min(BEAT_SECONDS, self.threshold / 4)
        self.last_beat = time.monotonic()
        self.loop_thread = threading.get_ident()  # made on the loop's own thread
        self.stalled_since: float | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.loop.call_soon(self._beat)
        threading.Thread(target=self._watch, name="tradelane-loop-watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        now = time.monotonic()
        if self.stalled_since is not None:
            log.warning("the event loop turns again after %.1f s", now - self.stalled_since)
            self.stalled_since = None
        self.last_beat = now
        if not self._stop.is_set():
            self.loop.call_later(self.beat_seconds, self._beat)

    def _watch(self) -> None:
        while not self._stop.wait(self.beat_seconds):
            if self.loop.is_closed():
                return
            if not self.loop.is_running():  # stopped, not stuck
                self.last_beat = time.monotonic()
                continue
            late = time.monotonic() - self.last_beat
            if late >= self.threshold and self.stalled_since is None:
                self.stalled_since = self.last_beat
                frame = sys._current_frames().get(self.loop_thread)
                log.warning(
                    "the event loop has not turned for %.1f s (every request waits); it is in %s",
                    late,
                    where(frame),
                )


def report_slow_transaction(seconds: float) -> None:
    """Called as a write transaction ends, by the function that began it: a warning if it took
    STALL_SECONDS or more. Its lock is taken as it begins, so the time includes any wait for
    another writer: the one that began first and ended last is the one that held it."""
    if seconds < STALL_SECONDS:
        return
    begun = datetime.now() - timedelta(seconds=seconds)
    log.warning(
        "a write transaction begun at %s took %.1f s (waiting for the database's lock included); "
        "it was begun in %s",
        begun.strftime("%H:%M:%S.%f")[:-3],
        seconds,
        where(sys._getframe(2)),  # the caller of the function that began it
    )
