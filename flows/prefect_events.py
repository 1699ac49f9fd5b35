"""A `tradelane.file.*` event as Prefect's events client sends it: one definition for every sender
(a run's batches in flows/events.py, the API's `received` batches in flows/received_events.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from prefect.events import Event, RelatedResource
from prefect.settings import get_current_settings

from core.notify.events import FileEvent


def utc(moment: datetime) -> datetime:
    """The store's times read back from SQLite are naive; they are UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def prefect_event(
    event: FileEvent, occurred: datetime | None, run_related: Sequence[RelatedResource] = ()
) -> Event:
    """`event` as Prefect's events worker sends it (`occurred` None: now): the run's related
    resources the event does not name already joined to its own, up to the server's maximum."""
    built = Event.model_validate(
        {
            "event": event.event,
            "resource": event.resource,
            "related": event.related,
            "payload": event.payload,
            "occurred": utc(occurred) if occurred else datetime.now(UTC),
        }
    )
    if run_related:
        involved = {resource.id for resource in built.involved_resources}
        room = max(get_current_settings().server.events.maximum_related_resources - len(built.related), 0)
        built.related += [resource for resource in run_related if resource.id not in involved][:room]
    return built
