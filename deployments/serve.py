"""The deployments of the data flows on the work pool, and `up`'s worker.

`DeploymentReconciler` registers one Prefect deployment per data flow (and one per polling data
flow's schedule) on the work pool `TRADELANE_WORK_POOL`, with module-path entrypoints (the code is
installed where workers run: no code storage), and keeps them in step with the store every few
seconds, so flows added or changed while tradelane runs are served without a restart.
Two kinds of process run it, with the same code (`keep_deployments`): `python -m deployments.serve`
(a child of `tradelane up`, beside one `TradelaneWorker`, deployments/worker.py) and `tradelane
serve dispatcher` (cli/roles.py), so a cluster of the roles alone needs nothing more; any number of
them at once only repeat each other's writes (registering a deployment is an upsert by name).
More workers on other machines take runs of the same pool.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from anyio import to_thread
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.flows import Flow
from prefect.types.entrypoint import EntrypointType

from core import dataflows
from core.config import Settings, get_settings
from core.db import session_scope
from core.models import DataFlow
from deployments import heartbeat
from deployments.limits import LimitMirror
from deployments.naming import deployment_name, poll_deployment, tags
from deployments.notify_rules import RuleMirror
from deployments.partner_notices import PartnerNoticeMirror
from deployments.sla_watch import SlaWatch
from deployments.work_pool import WorkPoolError, ensure_work_pool
from deployments.worker import make_worker, prepare_process, run_worker
from flows.poll import poll
from tradelane import templates

log = logging.getLogger("tradelane.runner")


async def register(flow: Flow[..., Any], work_pool: str, name: str, **options: Any) -> None:
    """Create or update a deployment of `flow` on the work pool, its code imported by module path."""
    deployment = await flow.ato_deployment(
        name=name,
        work_pool_name=work_pool,
        entrypoint_type=EntrypointType.MODULE_PATH,
        # Any worker (Prefect's own `prefect worker start` too) gives its runs the heartbeat the
        # dead-run automation expects; Prefect's default would have live runs crashed and re-sent.
        job_variables={"env": {heartbeat.HEARTBEAT_VARIABLE: str(heartbeat.heartbeat_seconds())}},
        **options,
    )
    await deployment.aapply()


class DeploymentReconciler:
    """Keeps one deployment per data flow registered on the work pool."""

    def __init__(self, work_pool: str) -> None:
        self.work_pool = work_pool
        self.seen: dict[int, datetime] = {}
        self.polling: dict[int, str] = {}  # polling flows served, by id: their poll deployments
        self.limits = LimitMirror()  # partners' and endpoints' concurrency limits, kept in Prefect
        self.rules = RuleMirror(work_pool, register)  # notification rules, kept as Prefect automations
        self.partner_notices = PartnerNoticeMirror(work_pool, register)  # rejected uploads, told
        self.slas = SlaWatch()  # SLAs' deadlines, checked against the store

    async def once(self) -> int:
        try:  # first, and apart: SLAs need the store only, not the Prefect API
            await self.slas.once()
        except Exception:
            log.exception("could not check the SLAs")
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
            await register(
                tmpl.flow,
                self.work_pool,
                name=deployment_name(flow.name, account),
                parameters=tmpl.run_parameters(flow.id, [], flow.params),
                tags=tags(flow.name, account),
                description=f"tradelane data flow {flow.name!r} ({flow.pattern}), template {tmpl.name}",
            )
            if dataflows.polls(flow):
                # Disabled polling flows keep their deployment, paused, so history stays in one place.
                await register(
                    poll,
                    self.work_pool,
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
        try:
            await self.rules.once()
        except Exception:  # a rule's trouble must not stop the data flows' deployments
            log.exception("could not keep the notification rules' automations")
        try:
            await self.partner_notices.once()
        except Exception:
            log.exception("could not keep the partner notices' automation")
        return added

    async def _pause_removed(self, current: set[int]) -> None:
        """A removed polling flow's schedule would go on firing: pause its deployment."""
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


async def start_reconciler(settings: Settings) -> DeploymentReconciler:
    """The work pool made if missing and every data flow's deployment registered once; then run
    `forever()`. Any number of processes may do this (`up`'s runner child, every `serve
    dispatcher`): registering is idempotent, so two at once only repeat each other's writes."""
    async with get_client() as client:
        await ensure_work_pool(client, settings.work_pool)  # before deployments name it
    reconciler = DeploymentReconciler(settings.work_pool)
    await reconciler.once()
    return reconciler


async def keep_deployments(settings: Settings) -> None:
    """Register every data flow's deployment, then keep them in step with the store until cancelled.

    A Prefect server or store briefly away at start is waited for (tried again every interval); a
    work pool of the wrong type is not (WorkPoolError: the role stops, naming it)."""
    while True:
        try:
            reconciler = await start_reconciler(settings)
        except WorkPoolError:
            raise
        except Exception:
            log.exception("could not register the deployments; trying again")
            await asyncio.sleep(settings.reconcile_interval_seconds)
            continue
        log.info("deployments registered on work pool %s", settings.work_pool)
        await asyncio.sleep(settings.reconcile_interval_seconds)
        await reconciler.forever(settings.reconcile_interval_seconds)


async def serve() -> None:
    """The reconciler and one worker: what `up` runs as its child."""
    settings = get_settings()
    async with asyncio.TaskGroup() as group:
        group.create_task(keep_deployments(settings))
        group.create_task(run_worker(make_worker(settings), settings))


def main() -> None:
    settings = get_settings()
    prepare_process(settings, "runner")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
