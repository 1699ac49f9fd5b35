"""The Prefect server's event consumers parsing only the events they may use.

In Prefect 3.8.8 every event the server receives goes to several consumers, and each parses the
whole event (a pydantic model, ~80 µs for a file event) before deciding whether it concerns it.
A burst sends two or three `tradelane.file.*` events per file; three of those consumers drop them:

* the task-run recorder keeps only `prefect.task-run.*`;
* the distributor hands events to the clients subscribed to the event stream (`/api/events/out`),
  each with a filter: on a running tradelane, Prefect workers watching for
  `prefect.flow-run.Cancelling`, and for runs to take, `Scheduled` and `AwaitingRetry`;
* the reactive triggers evaluate automations: until a notification rule exists, none looks at file
  events.

Each message already carries its event's name (`attributes["event"]`, set by the server's own
publisher), so each of them is given only the events whose name it may use, the others acknowledged
unread, as its own handler would have after parsing them. What each one does with an event it is
given is unchanged, and a message without that attribute goes through as before.
"""

from __future__ import annotations

import fnmatch
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from prefect.server.events import stream, triggers
from prefect.server.events.filters import EventFilter
from prefect.server.services import task_run_recorder
from prefect.server.utilities.messaging import Message, MessageHandler

ConsumerFactory = Callable[..., AbstractAsyncContextManager[MessageHandler]]

TASK_RUN_EVENTS = "prefect.task-run"  # the prefix the recorder itself keeps
# Our own events: no event follows one (Prefect's causal ordering), so the triggers may skip them.
TRADELANE_EVENTS = "tradelane."


def given_only(consumer: ConsumerFactory, may_use: Callable[[str], bool]) -> ConsumerFactory:
    """`consumer`, its handler given only the messages whose event name `may_use` accepts."""

    @asynccontextmanager
    async def only_what_it_may_use(*args: Any, **kwargs: Any) -> AsyncGenerator[MessageHandler, None]:
        async with consumer(*args, **kwargs) as handle:

            async def handle_if_usable(message: Message) -> None:
                name = (message.attributes or {}).get("event")
                if isinstance(name, str) and not may_use(name):
                    return  # acknowledged unread
                await handle(message)

            yield handle_if_usable

    return only_what_it_may_use


def is_task_run_event(name: str) -> bool:
    return name.startswith(TASK_RUN_EVENTS)


@dataclass(frozen=True)
class _Named:
    """What a name filter reads of an event: its name."""

    event: str


def name_filter_may_take(filter: EventFilter, name: str) -> bool:
    """False only when `filter` refuses every event called `name`, whatever else it holds."""
    return filter.event is None or filter.event.includes(_Named(name))  # type: ignore[arg-type]


def a_subscriber_may_want(name: str) -> bool:
    # `subscribers` and `filters` change only on the event loop this runs on, never during the loop.
    return any(name_filter_may_take(stream.filters[queue], name) for queue in stream.subscribers)


def an_automation_may_want(name: str) -> bool:
    """Prefect's own index of the loaded automations' triggers, by the event patterns they expect
    or start after (what `find_interested_triggers` reads): a file event none of them matches
    would have been dropped after parsing."""
    if not name.startswith(TRADELANE_EVENTS):
        return True  # Prefect's events also move the triggers' clock and causal ordering
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in triggers._triggers_by_expect)


task_run_events_only = given_only(task_run_recorder.consumer, is_task_run_event)
distributor_by_name = given_only(stream.distributor, a_subscriber_may_want)
triggers_by_name = given_only(triggers.consumer, an_automation_may_want)


def install() -> None:
    # Each service looks its module's consumer up when it starts; each wrapper takes what it wraps.
    task_run_recorder.consumer = task_run_events_only  # type: ignore[assignment]
    stream.distributor = distributor_by_name  # type: ignore[assignment]
    triggers.consumer = triggers_by_name  # type: ignore[assignment]
