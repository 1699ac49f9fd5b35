"""pull: list what is new at a polling source and take it in through the intake."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from anyio import to_thread
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core import polling
from core.endpoints.base import FileInfo
from core.polling import Source
from tasks.retry import is_retryable, passing_failure, retry_delays
from tasks.slots import Limits, held, limits_for

T = TypeVar("T")
PULL_RETRIES = 3
AFTER_PULL_RETRIES = 2
RETRY_BASE_SECONDS = 1.0


@task(
    name="list new files",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=passing_failure,
)
async def list_new(data_flow_id: int) -> list[FileInfo]:
    """What the polling source holds that this data flow has not taken yet."""
    source = await to_thread.run_sync(polling.load, data_flow_id)
    async with held(await _limits(source)):  # listing is a connection to the source too
        return await to_thread.run_sync(polling.new_files, source)


@task(name="pull files", cache_policy=NO_CACHE)
async def pull_files(data_flow_id: int, files: list[FileInfo]) -> list[dict[str, Any]]:
    """Take the new files in with one task run for the lot; each file's result is a row of the
    run's artifact (see `take_in`)."""
    source = await to_thread.run_sync(polling.load, data_flow_id)
    return await take_in(source, files, get_run_logger(), await _limits(source))


async def _limits(source: Source) -> Limits:
    """The source endpoint's concurrency limit (and its partner's, should a polling flow have one)."""
    return (await limits_for([(source.flow.source_partner_id, source.row.id)]))[0]


async def take_in(
    source: Source,
    files: list[FileInfo],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    limits: Limits | None = None,
) -> list[dict[str, Any]]:
    """Take each file in, one after another (sources are usually rate- or connection-limited),
    then delete, move or keep it at the source as the data flow says. A file is retried alone
    when it fails for a passing reason; one that still fails does not stop the others, and is
    not remembered, so the next poll offers it again. Each file holds a slot of `limits` (the
    source's and its partner's concurrency limits) while it is pulled."""
    rows: list[dict[str, Any]] = []
    for info in files:
        row: dict[str, Any] = {"file": info.path, "size": info.size}
        try:
            async with held(limits or {}):
                receipt = await _with_retries(polling.pull, source, info, retries=PULL_RETRIES)
                row["receipt"] = receipt.id
                done = await _with_retries(polling.after_pull, source, info, retries=AFTER_PULL_RETRIES)
            row["result"] = f"received; {done}"
        except Exception as exc:  # recorded in the row; the run ends Failed
            logger.warning("%s: %s", info.path, exc)
            row["result"] = f"failed: {exc}"
        rows.append(row)
    return rows


async def _with_retries(
    step: Callable[[Source, FileInfo], T], source: Source, info: FileInfo, retries: int
) -> T:
    """Run a blocking step in a thread; try again after a backoff while it fails for a passing reason."""
    for delay in [*retry_delays(retries, RETRY_BASE_SECONDS), None]:
        try:
            return await to_thread.run_sync(step, source, info)
        except Exception as exc:
            if delay is None or not is_retryable(exc):
                raise
            await anyio.sleep(delay)
    raise AssertionError("unreachable")
