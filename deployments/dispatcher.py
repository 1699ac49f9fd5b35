"""The dispatcher: turns pending transfers into Prefect deployment runs.

Woken by the intake after every receipt (and by its own sweep for work other processes left,
such as a CLI replay or a crash), it groups pending transfers of one data flow into bounded
batches and starts one run per batch (as `arun_deployment(..., timeout=0)` does: `_create_run`).
The batch key is written to the database *before* the run is created and doubles as the run's
idempotency key, so a crash between the two makes the next sweep ask for the same run again, never
a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from anyio import to_thread
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, WorkerFilter, WorkerFilterStatus
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Crashed, Scheduled

from core import intake, transfers
from core.b2b import connections
from core.config import Settings, get_settings
from core.db import session_scope
from core.transfers import Batch
from deployments import dead_runs, heartbeat, prefect_tls  # noqa: F401  (prefect_tls: installed on import)
from deployments.naming import tags, template_deployment
from tradelane import templates

log = logging.getLogger("tradelane.dispatcher")

# Let a burst of uploads collect for a moment so it becomes a few runs, not one per file.
DEBOUNCE_SECONDS = 0.05
# A wake this soon after the one before is part of a burst, and debounced; a file arriving alone
# (the last one came longer ago) is dispatched at once: the debounce would only delay it.
BURST_GAP_SECONDS = 0.25
# While files wait for their data flow's last run to start (transfers.claim_batches), the store is
# looked at this often, whatever the sweep interval: nothing wakes the dispatcher when a run starts.
HELD_RECHECK_SECONDS = 0.5
# A burst's debounce while files wait so: each pass finds their run not started yet, and costs ~1 ms
# of `up`'s CPU a file at 50 files/s when every upload starts one.
HELD_DEBOUNCE_SECONDS = 0.2
# How often in-flight transfers are checked against their runs' states (crashes, kills): part of
# the bound on noticing a dead run (TRADELANE_DEAD_RUN_SECONDS, deployments/dead_runs.py).
RECOVERY_INTERVAL_SECONDS = dead_runs.RECOVERY_INTERVAL_SECONDS
# How often the workers online on the pool are counted (the batch size follows, Settings.batch_size).
WORKERS_RECHECK_SECONDS = 10.0
# At boot, a run still Running or Pending since before this process started died with it.
ORPHAN_STATES = {"RUNNING", "PENDING"}
DEAD_STATES = {"CRASHED", "CANCELLED", "FAILED", "COMPLETED"}


class Dispatcher:
    def __init__(self, settings: Settings | None = None, *, runs_die_with_us: bool = False) -> None:
        """`runs_die_with_us`: the flow runs are run by a child of this process (`up`'s runner), so a
        run still Running or Pending at start died with the previous one and is requeued at once.
        Otherwise (a dispatcher alone, workers elsewhere) such a run may be alive on its worker, and
        only Prefect's dead-run automation (heartbeats, deployments/dead_runs.py) says it is dead."""
        self.settings = settings or get_settings()
        self.runs_die_with_us = runs_die_with_us
        self.booted_at = datetime.now(UTC)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._clock = time.monotonic
        self._wakes = (-BURST_GAP_SECONDS * 2, -BURST_GAP_SECONDS)  # clock times of the last two wakes
        self._wake_on_its_way = False  # handed to the loop, not yet run there
        self._woke = False  # a file was received since the last pass began
        self._waiting = False  # the loop waits for a wake (only then is one handed to it)
        self.runs_started = 0
        self._dead_run_automation = False  # made sure of in Prefect (at start, else at the next check)
        self.holding = False  # files wait for their data flow's last run to start (see _claim)
        self.online_workers: int | None = None  # on the pool, as last counted (None: not known)
        self._workers_counted_at = -WORKERS_RECHECK_SECONDS
        self._batch_said: int | None = None
        self._deployment_ids: dict[str, UUID] = {}  # by deployment name (see _create_run)

    def wake(self) -> None:
        """Thread-safe and cheap: called by the intake after every committed receipt.

        Only a dispatcher waiting for work is handed the wake: handing one to the event loop wakes
        its thread with a system call while this thread holds the GIL (~0.7 ms a file in a burst's
        profile). Otherwise (a pass or a debounce under way, or a wake already on its way) the
        mark `_woke` is enough: the loop reads it after saying it waits and before it waits, and
        this reads `_waiting` after setting the mark, so one of the two always sees the other."""
        if self._loop is None:
            return
        self._wakes = (self._wakes[1], self._clock())
        self._woke = True
        if not self._waiting or self._wake_on_its_way:
            return
        self._wake_on_its_way = True  # two threads both handing one over is harmless
        self._loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        self._wake_on_its_way = False
        self._wake.set()

    async def until_next_pass(self) -> None:
        """Return when the next pass is due: at once if a file was received since the last pass
        began, else on a wake or after `next_wait()`; a burst is debounced first, longer while files
        wait for a run to start (a pass then finds nothing new to start but costs the same)."""
        self._waiting = True
        try:
            if not self._woke:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.next_wait())
        finally:
            self._waiting = False
        if self.in_burst():
            await asyncio.sleep(HELD_DEBOUNCE_SECONDS if self.holding else DEBOUNCE_SECONDS)
        self._wake.clear()
        self._woke = False  # before the pass reads the store: a receipt after this marks it again

    def in_burst(self) -> bool:
        """The last two wakes came close together: files are arriving in a burst (debounce them)."""
        return self._wakes[1] - self._wakes[0] < BURST_GAP_SECONDS

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        intake.on_received(self.wake)
        # Said once at start (`up` prints it): the other templates work; this one's files fail.
        for broken in (await to_thread.run_sync(templates.load_all))[1]:
            log.error("%s", broken.describe())
        await self._recover_safely(boot=True)
        await self._count_workers()
        log.info("dispatching; runs in flight at start checked")
        last_recovery = self._loop.time()
        while True:
            await self.until_next_pass()
            try:
                await self.dispatch_once()
            except Exception:  # the database or Prefect may be briefly away; the next sweep retries
                log.exception("dispatch failed")
            await self._count_workers()  # after the pass, so never in a waiting file's way
            if self._loop.time() - last_recovery > RECOVERY_INTERVAL_SECONDS:
                await self._recover_safely(boot=False)
                last_recovery = self._loop.time()

    def next_wait(self) -> float:
        """Seconds until the next pass unless woken: the sweep interval, or soon while files wait."""
        sweep = self.settings.sweep_interval_seconds
        return min(sweep, HELD_RECHECK_SECONDS) if self.holding else sweep

    async def dispatch_once(self) -> int:
        """Claim pending transfers into batches and start a run for each batch without one."""
        batches = await to_thread.run_sync(self._claim)
        if not batches:
            return 0
        started = 0
        # One client for the pass, closed after it: run_deployment given none opens one of its own
        # per call and never closes it (one connection to the Prefect API leaked per run started).
        async with get_client() as client:
            for batch in batches:
                flow_run_id = await self._start_run(client, batch)
                if flow_run_id is not None:
                    await to_thread.run_sync(self._mark, batch.key, flow_run_id)
                    started += 1
        self.runs_started += started
        return started

    async def _count_workers(self) -> None:
        """Count the workers online on the pool into `online_workers` (None when Prefect could not
        say) every WORKERS_RECHECK_SECONDS, unless the batch size is set."""
        if self.settings.dispatch_batch_size is not None:
            return
        now = asyncio.get_running_loop().time()
        if now - self._workers_counted_at >= WORKERS_RECHECK_SECONDS:
            self._workers_counted_at = now
            try:
                async with get_client() as client:
                    self.online_workers = len(await online_workers(client, self.settings.work_pool))
            except Exception as exc:  # Prefect briefly away: batches as if the pool were shared
                log.warning("could not count the workers on pool %s: %s", self.settings.work_pool, exc)
                self.online_workers = None
            if (size := self.settings.batch_size(self.online_workers)) != self._batch_said:
                self._batch_said = size  # said when it changes, and once at start
                log.info(
                    "runs of up to %d files (%s online on pool %s)",
                    size,
                    "?" if self.online_workers is None else _workers(self.online_workers),
                    self.settings.work_pool,
                )

    def _claim(self) -> list[Batch]:
        """Claim into batches as large as the workers last counted allow (Settings.batch_size)."""
        batch_size = self.settings.batch_size(self.online_workers)
        with session_scope() as session:
            # Files put into a connection's outbox in the instant it became active (and expiries).
            connections.expire_due(session)
            connections.release_held(session)
        with session_scope() as session:
            self.holding = transfers.claim_batches(session, batch_size) > 0
        with session_scope() as session:
            return transfers.unlaunched_batches(session)

    @staticmethod
    def _mark(batch_key: str, flow_run_id: str) -> None:
        with session_scope() as session:
            transfers.mark_launched(session, batch_key, flow_run_id)

    async def _start_run(self, client: PrefectClient, batch: Batch) -> str | None:
        count = len(batch.transfer_ids)
        what = batch.first_file if count == 1 else f"{count} files"
        try:
            tmpl = templates.get(batch.template)
        except templates.TemplateError as exc:
            reason = (
                f"data flow {batch.data_flow_name!r} cannot run: {exc} (a template package installed "
                "while `tradelane up` runs is found when up is restarted; then `tradelane replay`)"
            )
            log.error("%s", reason)
            await to_thread.run_sync(_fail, batch.key, reason)
            return None
        try:
            # Checked when set, but the template may have changed since (a package upgraded): a run
            # refused its parameters would fail before taking its files, and be dispatched again.
            tmpl.check(batch.params)
        except templates.TemplateError as exc:
            reason = f"data flow {batch.data_flow_name!r} cannot run: {exc} (tradelane flow set --param)"
            log.error("%s", reason)
            await to_thread.run_sync(_fail, batch.key, reason)
            return None
        try:
            flow_run = await self._create_run(
                client,
                template_deployment(tmpl.flow_name, batch.data_flow_name, batch.account_name),
                parameters=tmpl.run_parameters(batch.data_flow_id, batch.transfer_ids, batch.params),
                name=batch.run_name or f"{batch.partner_name} → {batch.data_flow_name}: {what}",
                tags=batch.tags
                or [f"partner:{batch.partner_name}", *tags(batch.data_flow_name, batch.account_name)],
                idempotency_key=f"tradelane-batch-{batch.key}",
            )
        except ObjectNotFound:
            # The runner has not registered this data flow's deployment yet; it will within seconds.
            log.info("deployment for %s not served yet; will retry", batch.data_flow_name)
            return None
        return str(flow_run.id)

    async def _create_run(self, client: PrefectClient, deployment: str, **run: Any) -> FlowRun:
        """What `arun_deployment(deployment, timeout=0, ...)` does outside a flow, less its read of
        the deployment by name for every run: the id is remembered, a Prefect round trip less on
        each file's way (the first of a burst waits for it). A deployment replaced since (its data
        flow removed and added again) is not found by its old id, and is read by name again."""
        for _ in range(2):
            deployment_id = self._deployment_ids.get(deployment)
            if deployment_id is None:
                deployment_id = (await client.read_deployment_by_name(deployment)).id  # or ObjectNotFound
                self._deployment_ids[deployment] = deployment_id
            try:
                return await client.create_flow_run_from_deployment(
                    deployment_id, state=Scheduled(scheduled_time=datetime.now(UTC)), **run
                )
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
                del self._deployment_ids[deployment]
        raise ObjectNotFound(http_exc=Exception(f"deployment {deployment} was replaced while starting a run"))

    async def _recover_safely(self, boot: bool) -> None:
        try:
            if not self._dead_run_automation:
                async with get_client() as client:
                    await dead_runs.ensure_automation(client, self.settings.dead_run_seconds)
                self._dead_run_automation = True
        except heartbeat.DeadRunSettingError as exc:  # `up` refuses these at start; said, not retried
            log.error("%s", exc)
            self._dead_run_automation = True
        except Exception:
            log.exception("could not create the Prefect automation that notices dead runs; will retry")
        try:
            await self.recover(boot=boot)
        except Exception:
            log.exception("recovery check failed")

    async def recover(self, boot: bool = False) -> int:
        """Requeue transfers whose run died (crashed, killed with `up`, cancelled) before finishing them."""
        in_flight = await to_thread.run_sync(_in_flight)
        if not in_flight:
            return 0
        by_run: dict[str, list[int]] = {}
        for transfer_id, flow_run_id in in_flight:
            by_run.setdefault(flow_run_id, []).append(transfer_id)
        requeued = 0
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id) for run_id in by_run])),
                limit=len(by_run),
                # Explicit: prefect 3.8.8's client sends sort=null by default, which its server rejects.
                sort=FlowRunSort.ID_DESC,
            )
            found = {str(run.id): run for run in runs}
            crashed = [run_id for run_id, run in found.items() if run.state and run.state.is_crashed()]
            try:
                beating = await _still_beating(client, crashed)
            except Exception:  # no events to read (an old or restricted server): the state decides
                log.exception("could not read the crashed runs' heartbeats")
                beating = set()
            for run_id, ids in by_run.items():
                if run_id in beating:
                    # Crashed, yet it still sends heartbeats (the automation fired on late events):
                    # it may still be writing its files, so they are not given to a second run.
                    log.warning("run %s is marked crashed but still sends heartbeats; its files wait", run_id)
                    continue
                run = found.get(run_id)
                state = run.state.type.value if run and run.state else "MISSING"
                changed = run.state.timestamp if run and run.state else None
                verdict = dead_run_verdict(
                    state, changed, self.booted_at, orphans_are_dead=boot and self.runs_die_with_us
                )
                if verdict is not None:
                    if verdict == ORPHANED and run is not None:
                        await client.set_flow_run_state(
                            run.id,
                            Crashed(message="tradelane restarted while this run was in flight"),
                            force=True,
                        )
                    reason = f"run {run_id} ended {state.lower()} before finishing; dispatched again"
                    requeued += await to_thread.run_sync(_requeue, run_id, ids, reason)
        if requeued:
            log.warning("requeued %d transfers from dead runs", requeued)
            self._wake.set()
        return requeued


def _workers(count: int) -> str:
    return "1 worker" if count == 1 else f"{count} workers"


async def online_workers(client: PrefectClient, pool: str) -> list[str]:
    """The names of the workers Prefect holds online on `pool` (a worker's heartbeat keeps it
    online; Prefect marks it offline after three missed ones, 90 s by default)."""
    online = WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
    try:
        # offset and limit explicit: prefect 3.8.8's client sends null for them, which its server refuses.
        workers = await client.read_workers_for_work_pool(pool, worker_filter=online, offset=0, limit=200)
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:  # no worker has made the pool yet (the first one makes it)
            return []
        raise
    return [worker.name for worker in workers]


ENDED, ORPHANED = "ended", "orphaned"
# The most events Prefect's /events/filter gives in one page.
EVENTS_PAGE = 50


async def _still_beating(client: PrefectClient, run_ids: list[str]) -> set[str]:
    """Those of `run_ids` that sent a heartbeat within one period and its late margin: alive."""
    if not run_ids:
        return set()
    now = datetime.now(UTC)
    since = now - timedelta(seconds=heartbeat.heartbeat_seconds() + dead_runs.LATE_HEARTBEAT_ROOM_SECONDS)
    page = await client.read_events(
        EventFilter(
            occurred=EventOccurredFilter.model_validate(
                {"since": since, "until": now + timedelta(minutes=1)}
            ),
            event=EventNameFilter(name=[dead_runs.HEARTBEAT_EVENT]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}" for run_id in run_ids]),
        ),
        limit=EVENTS_PAGE,
    )
    events = list(page.events)
    while page.next_page is not None:
        page = await client.read_events_page(str(page.next_page))
        events += page.events
    return {event.resource.id.removeprefix("prefect.flow-run.") for event in events}


def dead_run_verdict(
    state: str, changed: datetime | None, booted_at: datetime, *, orphans_are_dead: bool
) -> str | None:
    """Whether a run holding transfers is dead: ENDED (a final state Prefect gave it, Crashed by the
    dead-run automation included, or gone), ORPHANED (Running or Pending since before this start,
    when its runner died with the previous one), None (alive, or not known to be dead)."""
    if state in DEAD_STATES or state == "MISSING":
        return ENDED
    if orphans_are_dead and state in ORPHAN_STATES and changed is not None and changed < booted_at:
        return ORPHANED
    return None


def _fail(batch_key: str, reason: str) -> None:
    with session_scope() as session:
        transfers.fail_unlaunched(session, batch_key, reason)


def _in_flight() -> list[tuple[int, str]]:
    with session_scope() as session:
        return [(t.id, t.flow_run_id) for t in transfers.in_flight(session) if t.id and t.flow_run_id]


def _requeue(flow_run_id: str, ids: list[int], reason: str) -> int:
    """Requeue those of `ids` that the dead run still holds: one another run took meanwhile (a
    second dispatcher requeued it first, a Retry took it) stays with that run (one conditional
    UPDATE in core, so a run's `take` cannot slip between a check and the requeue)."""
    with session_scope() as session:
        return transfers.requeue(session, ids, reason, from_run=flow_run_id)
