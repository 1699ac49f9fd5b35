"""A worker woken by Prefect's own event stream for each run scheduled on its work pool.

A worker learns of new runs by polling Prefect. Before, `up`'s dispatcher nudged `up`'s worker
with a datagram to a Unix socket in the home after each run it created, and a worker on another
machine had only its poll: every 0.5 s, so a quarter of a second of each run's latency on average,
and two requests a second to the Prefect server from each worker, idle or not. Prefect emits
`prefect.flow-run.Scheduled` for every run it schedules (`AwaitingRetry` for the UI's Retry),
with the run's work pool as a related resource, and streams events to subscribers
(`/api/events/out`, the stream Prefect's own workers watch for cancellations). A worker
subscribed to those on its pool asks for runs at once, on any machine, as fast as the datagram
did on one (bench.latency_breakdown, alternated; both at once was slower: two polls per run), and
polls only every 2 s as a fallback. Only a hint: Prefect's Pending state and the worker's limit
still decide who runs what, and a lost or late event, or a stream that is down (Prefect's
subscriber reconnects; this loop starts it again), leaves the run to the worker's next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

import anyio
from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

log = logging.getLogger("tradelane.worker")

# The state names a run that a worker should take now is given: a new run, and the UI's Retry.
WAKING_STATES = ("Scheduled", "AwaitingRetry")
WAKING_EVENTS = tuple(f"prefect.flow-run.{state}" for state in WAKING_STATES)
RESUBSCRIBE_SECONDS = 5.0  # after the stream failed past Prefect's own reconnection attempts...
MAX_RESUBSCRIBE_SECONDS = 60.0  # ...doubled while it keeps failing, up to this


def pool_resource(pool_id: UUID) -> str:
    return f"prefect.work-pool.{pool_id}"


def scheduled_on(pool_id: UUID) -> EventFilter:
    """What to ask the stream for: the server applies the names to the live stream, the related
    pool only to the backfill it reads from its database (Prefect 3.8.8's stream has no test for
    related resources), so `is_scheduled_on` checks each event again."""
    return EventFilter(
        event=EventNameFilter(name=list(WAKING_EVENTS)),
        related=EventRelatedFilter(resources_in_roles=[(pool_resource(pool_id), "work-pool")]),
    )


def is_scheduled_on(event: Event, pool_id: UUID) -> bool:
    """Whether `event` says a run was scheduled on the work pool `pool_id`."""
    wanted = pool_resource(pool_id)
    return event.event in WAKING_EVENTS and any(
        related.id == wanted and related.role == "work-pool" for related in event.related
    )


async def wake_on_scheduled(pool_id: Callable[[], UUID | None], wake: Callable[[], None]) -> None:
    """Call `wake()` for each run scheduled on the worker's pool, until cancelled. `pool_id()`: the
    pool's id once the worker has synced with it (None before), read again at each subscription
    (a pool removed and made again has a new id)."""
    pause = RESUBSCRIBE_SECONDS
    while True:
        while (pool := pool_id()) is None:
            await anyio.sleep(0.1)
        try:
            async with get_events_subscriber(filter=scheduled_on(pool)) as subscriber:
                log.info("woken by Prefect's events for runs scheduled on work pool %s", pool)
                pause = RESUBSCRIBE_SECONDS
                async for event in subscriber:
                    if is_scheduled_on(event, pool):
                        wake()
        except Exception as exc:  # the worker still polls: only latency is lost meanwhile
            # The whole story once; while the server stays away, a line per try, less and less often.
            first = pause == RESUBSCRIBE_SECONDS
            log.warning(
                "the event stream of scheduled runs failed (%s); polling only, next try in %.0f s",
                exc,
                pause,
                exc_info=first,
            )
        await anyio.sleep(pause)
        pause = min(pause * 2, MAX_RESUBSCRIBE_SECONDS)


class WorkerWakeups:
    """Reasons for a worker to ask Prefect for runs at once: `wake()` never blocks, and wake-ups
    that come during a poll make one more poll, not one each."""

    def __init__(self) -> None:
        self._due = anyio.Event()

    def wake(self) -> None:
        self._due.set()

    async def poll_on_each(self, ready: Callable[[], bool], poll: Callable[[], Awaitable[object]]) -> None:
        """Call `poll()` after each wake-up, once `ready()` (a wake-up before the worker could take
        runs is kept, not lost), until cancelled."""
        while True:
            await self._due.wait()
            self._due = anyio.Event()
            while not ready():
                await anyio.sleep(0.1)
            try:
                await poll()
            except Exception:  # the API briefly away: the worker's own polling carries on
                log.exception("poll after a wake-up failed")
