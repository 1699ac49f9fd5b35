"""The Prefect server's task-run recorder parsing only the events it records: task runs'.

Prefect 3.8.8's task-run recorder is one of the consumers every event the server receives goes
through, and it parses each one (a pydantic model of the whole event) only to drop all but
`prefect.task-run.*`: tradelane's file events, flow-run and deployment events were parsed for
nothing, one parse of about five each event costs the server. Each message already carries its
event's name (`attributes["event"]`, set by the server's own publisher), so the others are dropped
before they are parsed. What is recorded is unchanged; a message without that attribute goes
through as before.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from prefect.server.services import task_run_recorder
from prefect.server.utilities.messaging import Message

_prefect_consumer = task_run_recorder.consumer
TASK_RUN_EVENTS = "prefect.task-run"  # the prefix the recorder itself keeps


@asynccontextmanager
async def task_run_events_only(
    *args: Any, **kwargs: Any
) -> AsyncGenerator[Callable[[Message], Awaitable[None]], None]:
    """Prefect's recorder consumer, its handler given only what may be a task run's event."""
    async with _prefect_consumer(*args, **kwargs) as record:

        async def handle(message: Message) -> None:
            name = (message.attributes or {}).get("event")
            if isinstance(name, str) and not name.startswith(TASK_RUN_EVENTS):
                return  # acknowledged, as Prefect's handler does after parsing it
            await record(message)

        yield handle


def install() -> None:
    # `TaskRunRecorder.start` looks the module's `consumer` up when it starts.
    task_run_recorder.consumer = task_run_events_only
