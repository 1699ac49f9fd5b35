"""push: stream each file of a batch to the data flow's destination, several at once."""

from __future__ import annotations

from functools import partial

from anyio import to_thread
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core import delivery
from core.delivery import Job, Outcome
from tasks.each import each_in_threads
from tasks.slots import held, limits_for

# Files carried at once: enough to hide network latency, few enough for 2 cores and open sockets.
CONCURRENCY = 8


@task(name="push", cache_policy=NO_CACHE)
async def push(jobs: list[Job], attempt: int = 1) -> list[Outcome]:
    """One try for each job; the outcome holds the destination URI or the error (the flow retries)."""
    await to_thread.run_sync(delivery.count_attempts, [job.transfer_id for job in jobs])
    # From the second try on, an earlier one may have written a file before it failed.
    # Each file holds a slot of its partner's and its destination's concurrency limits, if set.
    limits = await limits_for([(job.receipt.partner_id, job.dest_row.id) for job in jobs])
    step = partial(delivery.push, again=attempt > 1)
    results = await each_in_threads(step, jobs, CONCURRENCY, lambda i: held(limits[i]))
    logger = get_run_logger()
    outcomes = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, Exception):
            logger.warning("%s: try %d failed: %s", job.receipt.name, attempt, delivery.describe(result))
            outcomes.append(Outcome(job, error=result))
        else:
            outcomes.append(Outcome.delivered(job, result))
    return outcomes
