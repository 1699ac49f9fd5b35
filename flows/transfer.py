"""The first flow template: start → validate → push → record for a batch of one data flow's files.

Each task is one task run for the whole batch (the files inside it are carried concurrently), so a
burst of 50 files costs the Prefect server three task runs, not 150 (`record` is a plain step). A
file that fails for a passing reason is pushed again, alone with the others that failed, after the
data flow's backoff: each try is its own `push` task run, so retries stay visible in the UI.

Retry on a failed run in the Prefect UI runs it again with the same parameters: its failed files
are carried again (as replays made by this run), so the run ends Completed only when they are
delivered; rejected files stay rejected, and the run's message says what became of each file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from core import derived
from core.delivery import Job, Left, Outcome, RunStart
from core.redact import install_log_scrubber
from flows import names
from flows.outcomes import publish_table, record
from tasks.derive import derive
from tasks.push import push
from tasks.retry import is_retryable, retry_delays
from tasks.start import start
from tasks.validate import validate


@dataclass(frozen=True)
class Step:
    """A content step of a template: its name (the task run's, and the chain's) and what it does to a
    job (core/derived.py `derive` makes the new file; edi-route chooses the destination)."""

    name: str
    run: Callable[[Job], Job]


@flow(name=names.TRANSFER, log_prints=False, persist_result=False)
async def transfer(data_flow_id: int, transfer_ids: list[int]) -> State[Any]:
    """Carry each pending transfer of the batch to the data flow's destination."""
    return await carry(transfer_ids)


async def carry(transfer_ids: list[int], steps: Sequence[Step] = ()) -> State[Any]:
    """start → validate → each step → push → record, for one batch: the body of every template."""
    install_log_scrubber()  # every secret an endpoint of this run holds is hidden in its logs
    started: RunStart = await start.with_options(task_run_name=f"start {_count(transfer_ids, 'transfer')}")(
        transfer_ids, flow_run.get_id()
    )
    jobs, left = started.jobs, started.left
    if not jobs:
        return _nothing_to_carry(left)
    rows: list[dict[str, Any]] = []
    to_push = jobs
    if jobs[0].flow.validators:
        errors = await validate.with_options(task_run_name=f"validate {_names(jobs)}")(jobs)
        rejected = [Outcome(job, error=error) for job, error in zip(jobs, errors, strict=True) if error]
        to_push = [job for job, error in zip(jobs, errors, strict=True) if error is None]
        if rejected:
            rows += await record(rejected)
    if steps:
        await to_thread.run_sync(derived.sweep)  # derived files a killed run left for finished transfers
    for step in steps:
        if not to_push:
            break
        results = await derive.with_options(task_run_name=f"{step.name} {_names(to_push)}")(to_push, step.run)
        stopped = [
            Outcome(job, error=r) for job, r in zip(to_push, results, strict=True) if isinstance(r, Exception)
        ]
        to_push = [r for r in results if not isinstance(r, Exception)]
        rows += await record(stopped)
    rows += await _push_with_retries(to_push)
    await publish_table(jobs[0].flow.name, rows)
    bad = [f"{row['file']}: {row['result']}" for row in rows if not row["result"].startswith("delivered")]
    bad += [file.describe() for file in left if not file.delivered()]
    total = len(rows) + len(left)
    summary = f"{total - len(bad)} of {total} files delivered"
    if started.again:
        summary += f" ({started.again} failed before, carried again by this retry)"
    if bad:
        return Failed(message=f"{summary}; {bad[0]}")
    return Completed(message=summary)


def _nothing_to_carry(left: list[Left]) -> State[Any]:
    """A run with nothing to carry (run again after every file was settled): say what became of them."""
    open_ = [file for file in left if not file.delivered()]
    if not open_:
        return Completed(message=f"nothing left to carry: {_count(left, 'file')} delivered before")
    delivered = len(left) - len(open_)
    return Failed(message=f"{delivered} of {len(left)} files delivered; {open_[0].describe()}")


async def _push_with_retries(jobs: list[Job]) -> list[dict[str, Any]]:
    """Push, then push again what failed for a passing reason, per the data flow's retry policy.

    Files are recorded as soon as their outcome is final, so a retried file does not hold the others.
    """
    rows: list[dict[str, Any]] = []
    if not jobs:
        return rows
    policy = jobs[0].flow  # one batch, one data flow
    delays = retry_delays(policy.retries, policy.retry_delay_seconds)
    for attempt in range(1, len(delays) + 2):
        label = _names(jobs) + (f" (try {attempt})" if attempt > 1 else "")
        results = await push.with_options(task_run_name=f"push {label}")(jobs, attempt)
        again = attempt <= len(delays)
        retry: list[Outcome] = []
        final: list[Outcome] = []
        for result in results:
            passing = again and result.error is not None and is_retryable(result.error)
            (retry if passing else final).append(result)
        rows += await record(final)
        if not retry:
            break
        jobs = [r.job for r in retry]
        await asyncio.sleep(delays[attempt - 1])
    return rows


def _names(jobs: list[Job]) -> str:
    return jobs[0].receipt.name if len(jobs) == 1 else f"{len(jobs)} files"


def _count(items: list[Any], noun: str) -> str:
    return f"1 {noun}" if len(items) == 1 else f"{len(items)} {noun}s"
