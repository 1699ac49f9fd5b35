"""pull: load a transfer's job and mark it running."""

from __future__ import annotations

from anyio import to_thread
from prefect import task
from prefect.cache_policies import NO_CACHE

from core import delivery
from core.delivery import Job


@task(name="pull", cache_policy=NO_CACHE, task_run_name="pull #{transfer_id}")
async def pull(transfer_id: int) -> Job | None:
    """The transfer's job, or None when an earlier run already finished it (re-dispatch after a crash)."""
    if not await to_thread.run_sync(delivery.mark_running, transfer_id):
        return None
    return await to_thread.run_sync(delivery.load, transfer_id)
