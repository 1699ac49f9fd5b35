"""The dispatcher debounces a burst of uploads (they become a few runs), not a file arriving alone
(the debounce would only delay it): decided from the time between its last two wakes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from core.config import Settings
from deployments.dispatcher import BURST_GAP_SECONDS, Dispatcher


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


def test_a_wake_on_its_way_stands_for_those_after_it() -> None:
    """A burst hands the event loop one wake until that one has run there; the next one after it
    is handed over again, and the event is set by each that runs."""
    dispatcher = Dispatcher(Settings())
    handed: list[Any] = []
    fake_loop: Any = SimpleNamespace(call_soon_threadsafe=handed.append)
    dispatcher._loop = fake_loop
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
