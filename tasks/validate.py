"""validate: run the data flow's validators over each file of a batch, streamed."""

from __future__ import annotations

import anyio
from anyio import to_thread
from prefect import task
from prefect.cache_policies import NO_CACHE

from core import delivery
from core.delivery import Job

# Files checked at once: each is one streamed read, so a few threads keep the disk busy.
CONCURRENCY = 4


@task(name="validate", cache_policy=NO_CACHE)
async def validate(jobs: list[Job]) -> list[Exception | None]:
    """Per job, the error that stops it (ValidationError, or the source changed) or None."""
    errors: list[Exception | None] = [None] * len(jobs)
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def check(index: int) -> None:
        try:
            await to_thread.run_sync(delivery.check, jobs[index], limiter=limiter)
        except Exception as exc:  # recorded per file; one bad file must not stop the batch
            errors[index] = exc

    async with anyio.create_task_group() as group:
        for index in range(len(jobs)):
            group.start_soon(check, index)
    return errors
