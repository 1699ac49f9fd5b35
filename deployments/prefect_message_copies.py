"""The Prefect server's in-memory message topics giving each subscriber its copy of a message cheaply.

In Prefect 3.8.8 a message published on an in-memory topic (every event the server receives, on
the `events` topic) is handed to each subscription (the event persister, the triggers, the task-run
recorder, the event stream, …) as `copy.deepcopy(message)`: the generic deep copy, in Python, of a
message that is bytes (immutable), a small dict of strings and a retry count. That was about 6 % of
the server's Python while it took a stream of file events. Here each subscription gets a new
message with its own attributes dict and retry count, the same bytes, and a deep copy of any
attribute value that is not a string; what a subscriber may change of its copy (the retry count,
the attributes) is still its own.
"""

from __future__ import annotations

import copy
from typing import Any

from prefect.server.utilities.messaging import memory
from prefect.server.utilities.messaging.memory import MemoryMessage, Topic

_IMMUTABLE = (str, bytes, int, float, bool, type(None))


def own_copy(message: MemoryMessage) -> MemoryMessage:
    """A copy of `message` that shares nothing mutable with it."""
    attributes: Any = message.attributes
    if attributes is not None:
        attributes = {
            key: value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value)
            for key, value in attributes.items()
        }
    # The data is bytes or str (MemoryMessage's type): shared as it is.
    return MemoryMessage(data=message.data, attributes=attributes, retry_count=message.retry_count)


async def publish(self: Topic, message: MemoryMessage) -> None:
    for subscription in self._subscriptions:
        await subscription.deliver(own_copy(message))


def install() -> None:
    memory.Topic.publish = publish  # type: ignore[method-assign]
