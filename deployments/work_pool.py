"""The Prefect work pool every data flow's deployment is on (`TRADELANE_WORK_POOL`, type process).

Created when missing by whoever starts first (the reconciler before it registers deployments, a
worker before it polls), so a fresh Prefect server needs no setup step. A pool of that name and
another type is refused: its workers could not run our deployments as they are registered.
"""

from __future__ import annotations

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.workers.process import ProcessWorker

POOL_TYPE = ProcessWorker.type  # "process"


class WorkPoolError(RuntimeError):
    """The configured work pool exists but cannot run tradelane's deployments."""


async def ensure_work_pool(client: PrefectClient, name: str) -> None:
    try:
        pool = await client.read_work_pool(name)
    except ObjectNotFound:
        create = WorkPoolCreate(
            name=name,
            type=POOL_TYPE,
            base_job_template=ProcessWorker.get_default_base_job_template(),
            description="tradelane data flows: run by `tradelane worker` or `prefect worker start`",
        )
        try:
            await client.create_work_pool(create)
        except ObjectAlreadyExists:  # another process made it meanwhile
            pool = await client.read_work_pool(name)
        else:
            return
    if pool.type != POOL_TYPE:
        raise WorkPoolError(
            f"work pool {name!r} is of type {pool.type!r}; tradelane's deployments need a {POOL_TYPE!r}"
            " pool: set TRADELANE_WORK_POOL to another name or delete that pool"
        )
