"""push: stream the file to its destination; retried per the data flow's policy."""

from __future__ import annotations

from anyio import to_thread
from prefect import task
from prefect.cache_policies import NO_CACHE

from core import delivery
from core.delivery import Job


@task(name="push", cache_policy=NO_CACHE, task_run_name="push {job.receipt.name}")
async def push(job: Job) -> str:
    """Deliver and return the destination URI; each try counts as one attempt."""
    await to_thread.run_sync(delivery.count_attempt, job.transfer_id)
    return await to_thread.run_sync(delivery.push, job)
