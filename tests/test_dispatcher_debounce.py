"""The dispatcher debounces a burst of uploads (they become a few runs), not a file arriving alone
(the debounce would only delay it): decided from the time between its last two wakes. A wake from
the intake's threads is handed to the event loop only while the dispatcher waits for one; a file
received during a pass is seen by the next pass, which then starts at once."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from core.config import Settings
from deployments.dispatcher import BURST_GAP_SECONDS, DEBOUNCE_SECONDS, HELD_DEBOUNCE_SECONDS, Dispatcher


def woken_at(*times: float) -> Dispatcher:
    dispatcher = Dispatcher(Settings())
    clock = iter(times)
    dispatcher._clock = lambda: next(clock)
    handed: list[object] = []
    fake_loop: Any = SimpleNamespace(call_soon_threadsafe=handed.append)
    dispatcher._loop = fake_loop
    for _ in times:
        dispatcher.wake()
    return dispatcher


def test_a_file_alone_is_not_debounced() -> None:
    assert not woken_at(100.0).in_burst()  # the first file since start
    assert not woken_at(100.0, 100.0 + BURST_GAP_SECONDS * 4).in_burst()  # one after a pause


def test_a_burst_is_debounced() -> None:
    assert woken_at(100.0, 100.01).in_burst()
    assert woken_at(100.0, 101.0, 101.001).in_burst()


def test_a_waiting_dispatcher_is_handed_one_wake_for_a_burst() -> None:
    """A burst hands the event loop one wake until that one has run there; the next one after it
    is handed over again, and the event is set by each that runs."""
    dispatcher = Dispatcher(Settings())
    handed: list[Any] = []
    fake_loop: Any = SimpleNamespace(call_soon_threadsafe=handed.append)
    dispatcher._loop = fake_loop
    dispatcher._waiting = True
    for _ in range(5):
        dispatcher.wake()
    assert handed == [dispatcher._woken]
    handed.pop()()
    assert dispatcher._wake.is_set()
    dispatcher._wake.clear()
    dispatcher.wake()
    assert handed == [dispatcher._woken]
    handed.pop()()
    assert dispatcher._wake.is_set()


def test_a_busy_dispatcher_is_only_marked() -> None:
    """During a pass or a debounce nothing is handed to the loop: the mark says a file came."""
    dispatcher = Dispatcher(Settings())
    handed: list[Any] = []
    fake_loop: Any = SimpleNamespace(call_soon_threadsafe=handed.append)
    dispatcher._loop = fake_loop
    for _ in range(5):
        dispatcher.wake()
    assert handed == [] and dispatcher._woke


SWEEP = 30.0  # far longer than any of these tests waits: a return before it was a wake


def waiting_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher(Settings(sweep_interval_seconds=SWEEP))
    dispatcher._loop = asyncio.get_running_loop()
    return dispatcher


async def test_a_file_received_during_a_pass_starts_the_next_one_at_once() -> None:
    dispatcher = waiting_dispatcher()
    dispatcher.wake()  # while no one waits: marked only
    await asyncio.wait_for(dispatcher.until_next_pass(), timeout=5)
    assert not dispatcher._woke  # the pass about to start sees that file; the mark is spent
    waiting = asyncio.create_task(dispatcher.until_next_pass())
    await asyncio.sleep(0.2)
    assert not waiting.done()  # nothing received since: it waits (for the sweep)
    waiting.cancel()


async def test_a_file_received_from_another_thread_wakes_a_waiting_dispatcher() -> None:
    dispatcher = waiting_dispatcher()
    waiting = asyncio.create_task(dispatcher.until_next_pass())
    await asyncio.sleep(0.1)
    assert dispatcher._waiting
    started = time.monotonic()
    await asyncio.to_thread(dispatcher.wake)
    await asyncio.wait_for(waiting, timeout=5)
    assert time.monotonic() - started < SWEEP / 2


async def test_a_burst_waits_longer_while_files_wait_for_their_run() -> None:
    """A burst is debounced by DEBOUNCE_SECONDS, or HELD_DEBOUNCE_SECONDS while the last pass held
    files back for a run that had not started: the pass would find nothing new to start."""
    for holding, expected in ((False, DEBOUNCE_SECONDS), (True, HELD_DEBOUNCE_SECONDS)):
        dispatcher = waiting_dispatcher()
        dispatcher.holding = holding
        dispatcher.wake()
        dispatcher.wake()  # two close together: a burst
        started = time.monotonic()
        await dispatcher.until_next_pass()
        assert time.monotonic() - started >= expected
