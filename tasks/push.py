"""push: stream each file of a batch to the data flow's destination, several at once."""

from __future__ import annotations

import anyio
from anyio import to_thread
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core import delivery
from core.delivery import Job, Outcome

# Files carried at once: enough to hide network latency, few enough for 2 cores and open sockets.
CONCURRENCY = 8


@task(name="push", cache_policy=NO_CACHE)
async def push(jobs: list[Job], attempt: int = 1) -> list[Outcome]:
    """One try for each job; the outcome holds the destination URI or the error (the flow retries)."""
    await to_thread.run_sync(delivery.count_attempts, [job.transfer_id for job in jobs])
    outcomes: list[Outcome] = [Outcome(job) for job in jobs]
    limiter = anyio.CapacityLimiter(CONCURRENCY)
    logger = get_run_logger()

    async def carry(index: int) -> None:
        job = jobs[index]
        try:
            uri = await to_thread.run_sync(delivery.push, job, limiter=limiter)
            outcomes[index] = Outcome(job, destination_uri=uri)
        except Exception as exc:  # recorded per file; the others of the batch go on
            logger.warning("%s: try %d failed: %s", job.receipt.name, attempt, delivery.describe(exc))
            outcomes[index] = Outcome(job, error=exc)

    async with anyio.create_task_group() as group:
        for index in range(len(jobs)):
            group.start_soon(carry, index)
    return outcomes
