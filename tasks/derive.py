"""derive: run one content step of a template (decrypt, compress, route...) over each file of a batch."""

from __future__ import annotations

from collections.abc import Callable

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core import delivery
from core.delivery import Job
from tasks.each import each_in_threads

# Files transformed at once: each step is CPU (gzip, gpg) or disk bound, and the machine has few cores.
CONCURRENCY = 2


@task(name="derive", cache_policy=NO_CACHE)
async def derive(jobs: list[Job], step: Callable[[Job], Job]) -> list[Job | Exception]:
    """Per job, the job carrying what the step made (see core/derived.py), or the error that stops it."""
    results = await each_in_threads(step, jobs, CONCURRENCY)
    logger = get_run_logger()
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, Exception):
            logger.warning("%s: %s", job.receipt.name, delivery.describe(result))
    return results
