"""The deployments' runner: one Prefect deployment per data flow, served by one polling Runner.

Run as its own process by `tradelane up` (`python -m deployments.serve`). It reconciles the database's
data flows into deployments every few seconds, so flows added or changed while `up` runs are
served without a restart. Scale-out runs the same deployments on a process work pool instead.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from anyio import to_thread
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.runner import Runner

from core import dataflows
from core.config import get_settings
from core.db import session_scope
from core.models import DataFlow
from core.permissions import make_private
from core.redact import install_log_scrubber
from deployments import dead_runs
from deployments.limits import LimitMirror
from deployments.naming import deployment_name, poll_deployment, tags
from flows.poll import poll
from tradelane import templates

log = logging.getLogger("tradelane.runner")


class DeploymentReconciler:
    """Keeps one deployment per data flow registered with the runner."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.seen: dict[int, datetime] = {}
        self.polling: dict[int, str] = {}  # polling flows served, by id: their poll deployments
        self.limits = LimitMirror()  # partners' and endpoints' concurrency limits, kept in Prefect

    async def once(self) -> int:
        await self.limits.once()
        flows = await to_thread.run_sync(_load_flows)
        await self._pause_removed({f.id for f, _ in flows if f.id is not None})
        added = 0
        for flow, account in flows:
            assert flow.id is not None
            if self.seen.get(flow.id) == flow.updated_at:
                continue
            try:
                tmpl = templates.get(flow.template)
            except templates.TemplateError as exc:
                # Said once per change of the flow; its uploads fail with this reason (dispatcher).
                log.error("data flow %s is not served: %s", deployment_name(flow.name, account), exc)
                self.seen[flow.id] = flow.updated_at
                continue
            await self.runner.aadd_flow(
                tmpl.flow,
                name=deployment_name(flow.name, account),
                parameters=tmpl.run_parameters(flow.id, [], flow.params),
                tags=tags(flow.name, account),
                description=f"tradelane data flow {flow.name!r} ({flow.pattern}), template {tmpl.name}",
            )
            if dataflows.polls(flow):
                # Disabled polling flows keep their deployment, paused, so history stays in one place.
                await self.runner.aadd_flow(
                    poll,
                    name=deployment_name(flow.name, account),
                    parameters={"data_flow_id": flow.id, "flow_name": flow.name},
                    interval=flow.schedule_interval_seconds,
                    cron=flow.schedule_cron,
                    paused=not flow.enabled,
                    # One poll of a source at a time; a poll due while the last still runs is skipped.
                    concurrency_limit=ConcurrencyLimitConfig(
                        limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
                    ),
                    tags=[*tags(flow.name, account), "poll"],
                    description=f"polls the source of tradelane data flow {flow.name!r}",
                )
                self.polling[flow.id] = poll_deployment(flow.name, account)
            self.seen[flow.id] = flow.updated_at
            added += 1
        return added

    async def _pause_removed(self, current: set[int]) -> None:
        """A removed polling flow's schedule would go on firing: pause its deployment."""
        from prefect.client.orchestration import get_client

        for flow_id in [i for i in self.seen if i not in current]:
            self.seen.pop(flow_id)
            name = self.polling.pop(flow_id, None)
            if name is None or name in self.polling.values():  # (a new flow took the name)
                continue
            async with get_client() as client:
                deployment = await client.read_deployment_by_name(name)
                await client.pause_deployment(deployment.id)
            log.info("paused the schedule of removed data flow %s", name)

    async def forever(self, interval: float) -> None:
        while True:
            try:
                await self.once()
            except Exception:  # the database or the API may be briefly away; try again next round
                log.exception("could not reconcile deployments")
            await asyncio.sleep(interval)


def _load_flows() -> list[tuple[DataFlow, str]]:
    with session_scope() as session:
        return dataflows.list_served_all_accounts(session)


async def serve() -> None:
    settings = get_settings()
    runner = Runner(
        name="tradelane",
        query_seconds=settings.runner_poll_seconds,
        # Take runs only as they fall due: a run fetched early holds its poll deployment's one
        # concurrency slot while it waits, so the 10 s default cancels every run due meanwhile
        # ("Deployment concurrency limit reached") and a 2 s poll ran only every ~12 s.
        prefetch_seconds=settings.runner_poll_seconds,
        limit=settings.runner_limit,
        pause_on_shutdown=False,
        # Put in every flow run's environment, so a runner started alone (without `up`'s Prefect
        # settings) still heartbeats as often as the dead-run automation expects (dead_runs.py).
        heartbeat_seconds=dead_runs.heartbeat_seconds(),
    )
    reconciler = DeploymentReconciler(runner)
    await reconciler.once()
    async with asyncio.TaskGroup() as group:
        group.create_task(runner.start())
        group.create_task(reconciler.forever(settings.reconcile_interval_seconds))


def start_flow_runs_from_forkserver() -> None:
    """Start each flow-run process from a warm fork server instead of a fresh interpreter.

    Prefect's runner starts every flow run with multiprocessing's "spawn", which re-imports Prefect
    and our code in each run: about a second of CPU per run on this class of machine, most of the
    upload-to-delivery latency. A fork server that has already imported the flow forks each run in
    milliseconds. The run still gets Prefect's own environment hand-over (it is passed in the call,
    not inherited), so only the process start changes.
    """
    import multiprocessing
    import types

    import prefect.flow_engine as engine

    # Every template's module (built-in and installed), so a run of any of them forks warm.
    preload = ["deployments.forkserver_guard", "flows.poll", *templates.preload_modules()]
    multiprocessing.set_forkserver_preload(preload)
    forkserver = multiprocessing.get_context("forkserver")
    shim = types.SimpleNamespace(
        **{k: getattr(multiprocessing, k) for k in dir(multiprocessing) if not k.startswith("__")}
    )
    shim.get_context = lambda method=None: forkserver
    engine.multiprocessing = shim  # type: ignore[assignment,attr-defined]


def main() -> None:
    install_log_scrubber()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner %(levelname)s %(message)s")
    make_private(get_settings().home_dir)  # started alone (scale-out), not only as a child of `up`
    for broken in templates.load_all()[1]:  # the others are served; this one's data flows are not
        log.error("%s", broken.describe())
    if get_settings().runner_forkserver:
        start_flow_runs_from_forkserver()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
