"""The Prefect side of the `tradelane.file.*` events (core/notify/events.py defines them): emit them.

`emit_event` queues the event for Prefect's events worker (a background thread that sends it over
the API's websocket), so it never waits on the network; without a Prefect API (`PREFECT_API_URL`
unset) it does nothing. Events are for the feed and for notification rules, never for correctness:
a lost event loses no file (the store is the truth), and a failure to emit is logged, never raised.
With `TRADELANE_EVENTS=off` nothing is emitted, nor read from the store for an event (`enabled`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from anyio import to_thread
from prefect.client.orchestration import PrefectClient, get_client
from prefect.context import FlowRunContext
from prefect.events import RelatedResource, emit_event
from prefect.events.clients import get_events_client
from prefect.events.related import related_resources_from_run_context
from prefect.events.worker import should_emit_events_to_running_server

from core import intake
from core.config import get_settings
from core.delivery import Job
from core.models import Receipt
from core.notify import facts
from core.notify.events import WHATS, FileEvent, FileFacts, build
from flows.prefect_events import prefect_event, utc
from flows.received_events import ReceivedSender

log = logging.getLogger("tradelane.events")


def enabled() -> bool:
    """`TRADELANE_EVENTS` (on by default): read here only. Off, no file event is built or emitted,
    and the intake's per-file query for the `received` event is not made."""
    return get_settings().events == "on"


def emit(event: FileEvent, occurred: datetime | None = None) -> None:
    """`occurred`: when it happened, if not now (a file's outcome: when the store recorded it)."""
    if not enabled():
        return
    try:
        emit_event(
            event=event.event,
            resource=event.resource,
            related=event.related,
            payload=event.payload,
            # The store's times read back from SQLite are naive; they are UTC.
            occurred=utc(occurred) if occurred else None,
        )
    except Exception:  # an event must never fail the upload or the run that emits it
        log.exception("could not emit %s", event.event)


def emit_file(what: str, file: FileFacts, occurred: datetime | None = None, **details: Any) -> None:
    """`tradelane.file.<what>`; a state that is no file event (a transfer another run holds) emits none."""
    if what in WHATS:
        emit(build(what, file, **details), occurred)


# One file event of a run's batch: what, the file, when (None: now), the payload's details.
Planned = tuple[str, FileFacts, datetime | None, dict[str, Any]]


async def emit_files(planned: Sequence[Planned]) -> None:
    """A run's file events of one step (its batch's outcomes, say), sent together.

    Sent one by one through `emit_event`, each event crossed three threads of Prefect's events
    worker and had the run's related resources put together again: most of what the events cost
    a run. Here they are put together once for the batch, and the events go out in order over one
    events connection, from the run's own loop (Prefect's events client: authentication,
    reconnection, resending what the server did not confirm). Of the run's related resources, only
    those that say something the event does not already say (RUN_ROLES_KEPT). Never for
    correctness: a failure is logged, and loses no file.
    """
    if not enabled():
        return
    events = [
        (build(what, file, **more), occurred) for what, file, occurred, more in planned if what in WHATS
    ]
    if not events:
        return
    if not should_emit_events_to_running_server():  # no Prefect API: as `emit_event` decides
        for event, occurred in events:
            emit(event, occurred)
        return
    try:
        run_related = await _run_related()
        async with get_events_client() as client:
            for event, occurred in events:
                await client.emit(prefect_event(event, occurred, run_related))
    except Exception:  # an event must never fail the run that emits it
        log.exception("could not emit %d file events", len(events))


# Of what Prefect joins to an event sent from a run (the run, its flow, deployment, work queue, work
# pool, tags, and the task run inside a task), a file event keeps the deployment (the data flow's
# page in the Prefect UI) and the task run; it names the flow run itself. The rest says little the
# event does not: the flow is the template, which the run shows; every tradelane run is on the same
# work pool and queue; the tags mostly repeat the data flow, account and connection the event
# relates (a B2B landing run's also name the other side's account). Each related resource is a row
# of Prefect's indexed `event_resources`: with all six, a file event cost the Prefect server about
# twice as much to store (`bench.events_server_cost --run-related all` against `none`).
RUN_ROLES_KEPT = frozenset({"deployment", "task-run"})


async def _run_related() -> list[RelatedResource]:
    """The run's related resources a file event keeps (RUN_ROLES_KEPT), as Prefect's events
    worker reads them (cached per process)."""
    context = FlowRunContext.get()
    if context is None:
        return []
    if isinstance(context.client, PrefectClient):  # an async flow's: every template's
        related = await related_resources_from_run_context(context.client)
    else:
        async with get_client() as client:
            related = await related_resources_from_run_context(client)
    return [resource for resource in related if resource.role in RUN_ROLES_KEPT]


def received(receipt: Receipt) -> None:
    """`tradelane.file.received` for a receipt just committed (the intake's hook)."""
    if not enabled():
        return
    try:
        file = facts.of_receipt(receipt)
    except Exception:
        log.exception("could not read receipt %s for its event", receipt.id)
        return
    emit_file("received", file, receipt.received_at, held=True if receipt.held else None)


_sender: ReceivedSender | None = None


def received_later(receipt: Receipt) -> None:
    """`tradelane.file.received` for a receipt just committed, queued for this process's batches
    (flows/received_events.py): the intake's hook in the API and mailbox servers."""
    if enabled() and _sender is not None:
        _sender.add(receipt)


def install_intake_events(batched: bool = False) -> None:
    """Emit `tradelane.file.received` for every file this process takes in (idempotent). `batched`:
    for a long-running process with a Prefect API (PREFECT_API_URL), sent in batches from a thread
    of its own (`flush_received` sends what is queued); else each at once, as any other event."""
    global _sender
    if batched and should_emit_events_to_running_server():
        if _sender is None:
            _sender = ReceivedSender()
        intake.on_receipt(received_later)
    else:
        intake.on_receipt(received)


def flush_received() -> None:
    """Send the queued `received` events now (a role that stops)."""
    if _sender is not None:
        try:
            _sender.flush()
        except Exception:
            log.exception("could not send the queued file events")


async def validated(jobs: list[Job], flow_run_id: str | None) -> None:
    if not enabled():
        return
    await emit_files([("validated", facts.of_job(job, flow_run_id), None, {}) for job in jobs])


async def replayed(jobs: list[Job], flow_run_id: str | None) -> None:
    """`tradelane.file.replayed` for each job that is a replay carried for the first time, whichever
    door made it (`tradelane replay`, the admin API, the console, Retry in the Prefect UI): emitted
    by the run that carries it, which always reaches Prefect (a CLI may not know where it is)."""
    if not jobs or not enabled():
        return
    replays = await to_thread.run_sync(facts.first_carries_of_replays, [job.transfer_id for job in jobs])
    await emit_files(
        [
            ("replayed", facts.of_job(job, flow_run_id), None, {"replay_of": replays[job.transfer_id]})
            for job in jobs
            if job.transfer_id in replays
        ]
    )
