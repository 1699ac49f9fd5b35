"""The Prefect server receiving an event without validating it a second time.

Prefect 3.8.8 turns each event it receives (over its websocket, its HTTP API, or from the server
itself) into a `ReceivedEvent` by dumping the event it has just validated to plain data and
validating all of it again: every label of every resource, the name, the related resources. That
second pass cost about as much as the first (~0.1 ms for a file event, two or three per file). Here the
`ReceivedEvent` is built from the validated fields as they are, with the same `received` time and
the same fields marked as given; the event it came from is not used again by any caller.
"""

from __future__ import annotations

from typing import Any

import prefect.types._datetime
from prefect.server.events.schemas.events import Event, ReceivedEvent

_EVENT_FIELDS = tuple(Event.model_fields)


def receive(self: Event, received: Any = None) -> ReceivedEvent:
    values = {name: getattr(self, name) for name in _EVENT_FIELDS}
    given = set(_EVENT_FIELDS)  # Prefect's own: every field of the dump, and `received` if given
    if received is not None:
        given.add("received")
    values["received"] = received if received is not None else prefect.types._datetime.now("UTC")
    return ReceivedEvent.model_construct(_fields_set=given, **values)


def install() -> None:
    Event.receive = receive  # type: ignore[method-assign]
