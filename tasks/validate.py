"""validate: run the data flow's validators over the file, streamed."""

from __future__ import annotations

from anyio import to_thread
from prefect import task
from prefect.cache_policies import NO_CACHE

from core import delivery
from core.delivery import Job


@task(name="validate", cache_policy=NO_CACHE, task_run_name="validate {job.receipt.name}")
async def validate(job: Job) -> None:
    """Raises core.validators.ValidationError (not retried) when the file fails a check."""
    await to_thread.run_sync(delivery.check, job)
