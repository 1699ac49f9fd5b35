"""validate: run the data flow's validators over each file of a batch, streamed."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from core import delivery
from core.delivery import Job
from tasks.each import each_in_threads

# Files checked at once: each is one streamed read, so a few threads keep the disk busy.
CONCURRENCY = 4


@task(name="validate", cache_policy=NO_CACHE)
async def validate(jobs: list[Job]) -> list[Exception | None]:
    """Per job, the error that stops it (ValidationError, or the source changed) or None."""
    results = await each_in_threads(delivery.check, jobs, CONCURRENCY)
    return [result if isinstance(result, Exception) else None for result in results]
