"""`tradelane worker`: a Prefect process worker on the tradelane work pool, its runs forked warm.

The deployments are on a Prefect work pool of type process (deployments/work_pool.py), so Prefect's
own `prefect worker start --pool tradelane` runs them too: it starts each flow run as a fresh
`python -m prefect.engine`, which imports Prefect and our flows again, about a second of CPU per
run. `TradelaneWorker` is that same ProcessWorker (Prefect's polling, its `limit` of runs at once,
the `prefect.worker.name` label on every run it takes, cancellation, crash reporting), except for
how a run's process starts: it is forked from a fork server that has already imported every
template's flow, in milliseconds, as the Runner `up` used before did. `TRADELANE_RUNNER_FORKSERVER=
false` makes it start runs exactly as Prefect's own worker does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any
from uuid import UUID

import anyio
import anyio.abc
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.runner._flow_run_executor import FlowRunExecutionResult, FlowRunExecutorContext
from prefect.runner._process_manager import ProcessHandle
from prefect.runner._starter_direct import DirectSubprocessStarter
from prefect.settings import PREFECT_WORKER_QUERY_SECONDS, temporary_settings
from prefect.settings.legacy import Setting
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from core.config import Settings
from core.permissions import make_private
from core.redact import install_log_scrubber
from deployments import (  # noqa: F401  (prefect_tls, settings_dumps: installed on import)
    heartbeat,
    prefect_tls,
    scheduled_wake,
    settings_dumps,
)
from deployments.work_pool import ensure_work_pool
from deployments.worker_name import default_worker_name
from tradelane import templates

log = logging.getLogger("tradelane.worker")

UPDATED = "prefect.io/deployment-updated"  # a label Prefect's worker gives each run's configuration
RECHECK_SECONDS = 0.25  # a wake-up's second poll, when the first saw no run at all


class _SubmissionReads:
    """The deployments read while one run is submitted (TradelaneWorker._submit_run), by id; None
    once the submission has ended (the run's own task keeps this context, and reads afresh)."""

    def __init__(self) -> None:
        self.by_id: dict[UUID | str, DeploymentResponse] | None = {}


_reads_of_this_submission: ContextVar[_SubmissionReads | None] = ContextVar(
    "tradelane_reads_of_this_submission", default=None
)
ReadDeployment = Callable[[UUID | str], Coroutine[Any, Any, DeploymentResponse]]


def reading_once_per_submission(read: ReadDeployment) -> ReadDeployment:
    """`read` (a client's read_deployment), answered from the first read of the same deployment
    while one run is submitted: Prefect's worker reads a run's deployment to see that it still
    exists, and again a few milliseconds later to build the run's configuration; each read is a
    round trip to the Prefect server on every file's way to its run. Outside a submission (and
    in the run's task once it has started), every call reads."""

    async def read_deployment(deployment_id: UUID | str) -> DeploymentResponse:
        reads = _reads_of_this_submission.get()
        by_id = reads.by_id if reads is not None else None
        if by_id is None:
            return await read(deployment_id)
        if deployment_id not in by_id:
            by_id[deployment_id] = await read(deployment_id)
        return by_id[deployment_id]

    return read_deployment


async def run_worker(worker: TradelaneWorker, settings: Settings) -> None:
    """Run `worker` until cancelled, asking for runs every TRADELANE_RUNNER_POLL_SECONDS unless the
    user set Prefect's own PREFECT_WORKER_QUERY_SECONDS, which is honoured as given; and at once
    whenever Prefect streams the event of a run scheduled on its pool (deployments/scheduled_wake.py)."""
    # Prefect's default is 10 s: a run whose wake-up is lost would wait ~10 s for a worker to notice
    # it. Usually in the environment already (`prepare_process`), where Prefect read its settings
    # before it was set.
    seconds = os.environ.get("PREFECT_WORKER_QUERY_SECONDS") or settings.poll_seconds()
    updates: dict[Setting, Any] = {PREFECT_WORKER_QUERY_SECONDS: float(seconds)}
    async with get_client() as client:
        await ensure_work_pool(client, settings.work_pool)  # refuses a pool of another type
    wakeups = scheduled_wake.WorkerWakeups()
    worker.wake = wakeups.wake  # also when a slot frees while runs were left waiting for one
    with temporary_settings(updates=updates):
        async with anyio.create_task_group() as group:
            group.start_soon(wakeups.poll_on_each, worker.can_poll, worker.poll_when_woken)
            group.start_soon(scheduled_wake.wake_on_scheduled, worker.work_pool_id, wakeups.wake)
            await worker.start(printer=log.info)
            group.cancel_scope.cancel()


class TradelaneWorker(ProcessWorker):
    """Prefect's process worker; with `forkserver`, each run is forked from the warm fork server."""

    type = "process"

    @classmethod
    def __dispatch_key__(cls) -> str:
        # Prefect's registry maps a pool type to its worker class; keep "process" Prefect's own.
        return "tradelane-process"

    def __init__(self, *args: Any, forkserver: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forkserver = forkserver
        self._flows: dict[str, Flow[..., Any]] = {}  # by entrypoint
        self._by_deployment: dict[tuple[str | None, str | None], Flow[..., Any]] = {}
        self._executors: FlowRunExecutorContext | None = None
        # One poll at a time: Prefect's own loop and those a wake-up asks for (scheduled_wake.py).
        self._polling = anyio.Lock()
        self.wake: Callable[[], None] | None = None  # asks for a poll at once (run_worker sets it)
        self._runs_left_waiting = False  # a poll found more runs than free slots
        self._runs_seen = 0  # scheduled runs the last poll got from Prefect

    async def setup(self) -> None:
        await super().setup()
        if self._client is not None:
            self._client.read_deployment = reading_once_per_submission(  # type: ignore[method-assign,assignment]
                self._client.read_deployment
            )

    async def _submit_run(self, flow_run: FlowRun) -> None:
        """Prefect's, with the deployment read once for the whole submission (the run's start
        included: it is started from here, in a task that inherits this context)."""
        reads = _SubmissionReads()
        token = _reads_of_this_submission.set(reads)
        try:
            await super()._submit_run(flow_run)
        finally:
            reads.by_id = None
            _reads_of_this_submission.reset(token)

    def work_pool_id(self) -> UUID | None:
        """The pool's id, once synced with it."""
        return self._work_pool.id if self._work_pool is not None else None

    def can_poll(self) -> bool:
        """Started, synced with the work pool and not tearing down: a poll now can take runs."""
        return self._client is not None and self._has_successfully_synced and self.is_setup

    def _free_slots(self) -> float:
        return self._limiter.available_tokens if self._limiter is not None else float("inf")

    async def get_and_submit_flow_runs(self) -> list[FlowRun]:
        async with self._polling:
            return await super().get_and_submit_flow_runs()

    async def poll_when_woken(self) -> list[FlowRun]:
        """A wake-up's poll. None while every slot is taken: the next slot freed asks instead
        (`_release_limit_slot`). And once more, shortly after, when it saw no run at all: Prefect
        announces a run from inside the transaction that creates it, so a quick poll can come
        before that transaction is committed and not see the run yet. (A poll that saw the run
        but lost it to another worker does not ask again.)"""
        if self._free_slots() < 1:
            self._runs_left_waiting = True
            return []
        self._runs_seen = 0
        taken = await self.get_and_submit_flow_runs()
        if not taken and not self._runs_seen and self.can_poll():
            await anyio.sleep(RECHECK_SECONDS)
            if self._free_slots() >= 1 and self.can_poll():
                taken = await self.get_and_submit_flow_runs()
        return taken

    async def _get_scheduled_flow_runs(self) -> list[Any]:
        found: list[Any] = await super()._get_scheduled_flow_runs()
        self._runs_seen = len(found)
        return found

    def _release_limit_slot(self, flow_run_id: UUID) -> None:
        super()._release_limit_slot(flow_run_id)
        if self._runs_left_waiting and self.wake is not None:
            self._runs_left_waiting = False
            self.wake()

    async def __aenter__(self) -> TradelaneWorker:
        await super().__aenter__()
        if self._forkserver:
            # One client, process manager and cancellation observer for every run this worker
            # starts, where Prefect's worker opens them again for each run.
            self._executors = await FlowRunExecutorContext().__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await super().__aexit__(*exc_info)  # waits for the runs in flight
        finally:
            if self._executors is not None:
                await self._executors.__aexit__(*exc_info)
                self._executors = None

    async def _submit_scheduled_flow_runs(self, flow_run_response: list[Any]) -> list[FlowRun]:
        """Prefect's, minus the runs whose last attempt still holds a slot here.

        A run retried from the Prefect UI (Retry) comes back with the same id, possibly while
        this worker is still reaping its last attempt's process. Prefect's worker would then take
        a second slot for the same id, which anyio refuses with a RuntimeError that ends the
        worker's polling for good: it takes no run after that. At a 10 s poll (Prefect's default)
        the window is rarely hit; at ours it is. Left for the next poll instead."""
        held = set(self._limiter.statistics().borrowers) if self._limiter is not None else set()
        fresh = [entry for entry in flow_run_response if entry.flow_run.id not in held]
        if len(fresh) > self._free_slots():
            self._runs_left_waiting = True  # taken when a slot frees, not at the next poll
        return await super()._submit_scheduled_flow_runs(fresh)

    async def resolve_flow(self, flow_run: FlowRun) -> Flow[..., Any]:
        """The deployment's flow, imported once per worker (the code is installed: no storage)."""
        if flow_run.deployment_id is None:
            raise ValueError(f"flow run {flow_run.id} has no deployment")
        deployment = await self.client.read_deployment(flow_run.deployment_id)
        entrypoint = deployment.entrypoint
        if entrypoint is None:
            raise ValueError(f"deployment {deployment.name!r} has no entrypoint")
        if entrypoint not in self._flows:
            self._flows[entrypoint] = await anyio.to_thread.run_sync(load_flow_from_entrypoint, entrypoint)
        return self._flows[entrypoint]

    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        if self._executors is None:
            return await super().run(flow_run, configuration, task_status)
        # A deployment's flow changes only with the deployment: its id and update time name it,
        # so a run of a known deployment starts without asking the API for it again.
        known = (configuration.labels.get("prefect.io/deployment-id"), configuration.labels.get(UPDATED))
        flow = self._by_deployment.get(known) or await self.resolve_flow(flow_run)
        if known[0] and known[1]:
            self._by_deployment[known] = flow
        starter = DirectSubprocessStarter(
            flow=flow,
            deployment_name=configuration.labels.get("prefect.io/deployment-name"),
            # A forked run gets no job environment: the heartbeat the dead-run automation expects.
            heartbeat_seconds=heartbeat.heartbeat_seconds(),
            control_channel=self._executors.control_channel,
        )
        executor = self._executors.create_executor(
            flow_run, starter, resolve_flow=self.resolve_flow, propose_submitting=False
        )
        execution: FlowRunExecutionResult | None = None

        async def execute(
            *, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED
        ) -> None:
            nonlocal execution
            execution = await executor.submit(task_status=task_status)

        async with anyio.create_task_group() as group:
            handle = await group.start(execute)
            if handle.pid is None:
                raise RuntimeError("Flow run process has no PID")
            (task_status or anyio.TASK_STATUS_IGNORED).started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("Failed to start flow run process.")
        return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))


def start_flow_runs_from_forkserver() -> None:
    """Start each flow-run process from a warm fork server instead of a fresh interpreter.

    Prefect starts a flow object's run with multiprocessing's "spawn", which re-imports Prefect
    and our code in each run: about a second of CPU per run on this class of machine, most of the
    upload-to-delivery latency. A fork server that has already imported the flow forks each run in
    milliseconds. The run still gets Prefect's own environment hand-over (it is passed in the call,
    not inherited), so only the process start changes.
    """
    import multiprocessing
    import types
    from multiprocessing import forkserver as forkserver_process
    from multiprocessing import spawn

    import prefect.flow_engine as engine

    # Every template's module (built-in and installed), so a run of any of them forks warm; the
    # object stores' SDKs, whose import a push would otherwise pay (forkserver_warm); Prefect's
    # clients sharing their TLS contexts (deployments/prefect_tls.py); and what each run would do
    # first (forkserver_ready: the engines imported, the models completed, the mappers configured).
    preload = [
        "deployments.forkserver_guard",
        "deployments.prefect_tls",
        "deployments.prefect_result_store",  # a run's read of the server's result storage closes its client
        "deployments.forkserver_warm",
        "flows.poll",
        *templates.preload_modules(),
        "deployments.forkserver_settings",  # Prefect's settings, built once rather than twice per run
        "deployments.forkserver_ready",  # last: what every run would do first, with all of the above imported
    ]
    multiprocessing.set_forkserver_preload(preload)
    forkserver = multiprocessing.get_context("forkserver")
    shim = types.SimpleNamespace(
        **{k: getattr(multiprocessing, k) for k in dir(multiprocessing) if not k.startswith("__")}
    )
    shim.get_context = lambda method=None: forkserver
    engine.multiprocessing = shim  # type: ignore[assignment,attr-defined]
    if not getattr(spawn.get_preparation_data, "leaves_main_out", False):
        spawn.get_preparation_data = _without_main(spawn.get_preparation_data)  # type: ignore[assignment]
    # Started now rather than by the first run: its imports (seconds of CPU) are done while the
    # worker starts up, not while the first file waits. The first run's connection waits in the
    # server's listen queue until they are done.
    forkserver_process.ensure_running()


def _without_main(prepare: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    """multiprocessing's preparation of a child, minus the parent's main module: a forked flow run
    needs only what the fork server preloaded (its target and flow are Prefect's and ours, pickled
    by module), yet multiprocessing would import this process's `__main__` into every run again
    (`deployments.serve` under `up`, the `tradelane` script and all of cli/ under `tradelane
    worker`): ~110-160 modules, ~0.13-0.18 s of CPU per run."""

    def prepared(name: str) -> dict[str, Any]:
        data = prepare(name)
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
        return data

    prepared.leaves_main_out = True  # type: ignore[attr-defined]
    return prepared


def make_worker(settings: Settings, name: str | None = None, limit: int | None = None) -> TradelaneWorker:
    """A worker on the configured pool; call `start_flow_runs_from_forkserver()` first if forking."""
    prefetch = os.environ.get("PREFECT_WORKER_PREFETCH_SECONDS")
    return TradelaneWorker(
        work_pool_name=settings.work_pool,
        name=name or default_worker_name(settings.home_dir),
        limit=settings.runner_limit if limit is None else limit,
        # A run fetched early holds its poll deployment's one concurrency slot while it waits, so
        # Prefect's 10 s default cancels every poll due meanwhile ("Deployment concurrency limit
        # reached"): take runs only as they fall due, unless the user says otherwise.
        prefetch_seconds=float(prefetch) if prefetch else settings.poll_seconds(),
        forkserver=settings.runner_forkserver,
    )


def prepare_process(settings: Settings, role: str) -> None:
    """What a process that runs flow runs sets up first: logs, the home's privacy, the fork server.

    How often its worker asks for runs goes into the environment before the fork server starts:
    the fork server then builds the same Prefect settings as the worker's, which each run can take
    instead of building its own (deployments/forkserver_settings.py).
    """
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", str(settings.poll_seconds()))
    install_log_scrubber()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {role} %(levelname)s %(message)s")
    # Prefect's logging setup, done later in this process, puts the root logger back to WARNING:
    # our INFO lines (deployments registered, woken by events) were dropped without this.
    logging.getLogger("tradelane").setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    make_private(settings.home_dir)  # started alone (scale-out), not only as a child of `up`
    for broken in templates.load_all()[1]:  # the others are served; this one's data flows are not
        log.error("%s", broken.describe())
    if settings.runner_forkserver:
        start_flow_runs_from_forkserver()
