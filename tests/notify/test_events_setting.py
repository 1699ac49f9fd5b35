"""`TRADELANE_EVENTS=on|off`: off, no `tradelane.file.*` event is emitted (nor read from the store).

The events go to Prefect's own recording events client (prefect.testing's `asserting_events_worker`),
the worker every `emit_event` in this process then uses (its orchestration client is the session's
Prefect test server's); the receipt is a real one of a throwaway home.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from prefect.testing.fixtures import asserting_events_worker  # noqa: F401 (a fixture, used by name)

from core.db import init_db
from core.models import Receipt
from flows import events
from tests.isolation import clear_caches, isolated_home, run_cli
from tradelane.testing import receipt_from_bytes


@pytest.fixture
def receipt(tmp_path: Path) -> Iterator[Receipt]:
    with isolated_home(tmp_path):
        init_db()
        run_cli("partner", "add", "acme", "--password", "Events_setting_P@ss1")
        yield receipt_from_bytes("acme", "po.txt", b"hello")


def emitted(worker: EventsWorker) -> list[str]:
    """What the worker's recording client got (read as prefect.testing's own fixtures read it)."""
    worker.drain()
    client = worker._client
    assert isinstance(client, AssertingEventsClient)
    return [event.event for event in client.events]


@pytest.mark.parametrize("setting", ["on", "off"])
def test_events_off_emits_no_file_event(
    setting: str,
    receipt: Receipt,
    prefect_server: None,  # the recording worker's orchestration client asks it, not an ephemeral one
    asserting_events_worker: EventsWorker,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADELANE_EVENTS", setting)
    clear_caches()
    try:
        events.received(receipt)
        wanted = ["tradelane.file.received"] if setting == "on" else []
        assert emitted(asserting_events_worker) == wanted
    finally:
        monkeypatch.delenv("TRADELANE_EVENTS")
        clear_caches()


def test_events_is_on_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from core.config import Settings

    monkeypatch.setenv("TRADELANE_EVENTS", "maybe")
    with pytest.raises(ValidationError, match="events"):
        Settings()


@pytest.mark.parametrize("setting", ["on", "off"])
def test_batched_received_events_are_the_events_emitted_one_by_one(
    setting: str, receipt: Receipt, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API and the mailbox servers send `received` in batches (flows/received_events.py): the
    same event, content and time as `emit_event` is given for a receipt; none when events are off."""
    from core.notify import facts
    from core.notify.events import build
    from flows.received_events import ReceivedSender

    monkeypatch.setenv("TRADELANE_EVENTS", setting)
    clear_caches()
    recorder = AssertingEventsClient()
    monkeypatch.setattr(events, "_sender", ReceivedSender(lambda: recorder))
    try:
        for _ in range(3):
            events.received_later(receipt)
        events.flush_received()
        expected = build("received", facts.of_receipt(receipt))
        sent = getattr(recorder, "events", [])
        assert len(sent) == (3 if setting == "on" else 0)
        for event in sent:
            assert (event.event, dict(event.resource), [dict(r) for r in event.related], event.payload) == (
                expected.event,
                expected.resource,
                expected.related,
                expected.payload,
            )
            assert event.occurred == receipt.received_at.replace(tzinfo=UTC)
    finally:
        monkeypatch.delenv("TRADELANE_EVENTS")
        clear_caches()
