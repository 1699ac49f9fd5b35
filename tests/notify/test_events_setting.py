"""`TRADELANE_EVENTS=on|off`: off, no `tradelane.file.*` event is emitted (nor read from the store).

The events go to Prefect's own recording events client (prefect.testing's `asserting_events_worker`),
the worker every `emit_event` in this process then uses (its orchestration client is the session's
Prefect test server's); the receipt is a real one of a throwaway home.
"""

from __future__ import annotations

from collections.abc import Iterator
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
