"""The first flow template: start → validate → push → record for a batch of one data flow's files.

Each task is one task run for the whole batch (the files inside it are carried concurrently), so a
burst of 50 files costs the Prefect server three task runs, not 150 (`record` is a plain step). A
file that fails for a passing reason is pushed again, alone with the others that failed, after the
data flow's backoff: each try is its own `push` task run, so retries stay visible in the UI.

Retry on a failed run in the Prefect UI runs it again with the same parameters: its failed files
are carried again (as replays made by this run), so the run ends Completed only when they are
delivered; rejected files stay rejected, and the run's message says what became of each file.

A file whose destination cannot take it now (a Deferrable error, once the data flow's retries are
spent) waits: the run ends `Failed` named "Waiting" — not Completed, since the file is not there
yet — and says when the next try is; a later run carries it (the dispatcher starts one when it is
due), or Retry on this run carries it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from core.delivery import WAITING_NOTE, Job, Left, Outcome, RunStart
from core.models import TransferState
from core.redact import install_log_scrubber
from flows import events, names
from flows.outcomes import publish_table, record
from tasks.as_is import as_is
from tasks.push import push
from tasks.retry import is_retryable, retry_delays
from tasks.start import start
from tasks.validate import validate
from tradelane.templates import template


@template(names.TRANSFER, tasks=[start, validate, push])
@flow(name=names.TRANSFER, log_prints=False, persist_result=False)
async def transfer(data_flow_id: int, transfer_ids: list[int]) -> State[Any]:
    """Carry each pending transfer of the batch to the data flow's destination."""
    install_log_scrubber()  # every secret an endpoint of this run holds is hidden in its logs
    started: RunStart = await start.with_options(task_run_name=f"start {_count(transfer_ids, 'transfer')}")(
        as_is(transfer_ids), flow_run.get_id()
    )
    jobs = started.jobs
    if not jobs:
        return _nothing_to_carry(started.left)
    errors = None
    if jobs[0].flow.validators:
        errors = await validate.with_options(task_run_name=f"validate {_names(jobs)}")(as_is(jobs))
    return await carry(started, errors)


async def carry(started: RunStart, refused: Sequence[BaseException | None] | None = None) -> State[Any]:
    """The end of every template's run: record the files a step refused (`refused[i]` for
    `started.jobs[i]`: rejected with that reason, e.g. a `core.validators.ValidationError`), push the
    others with the data flow's retries, publish the run's table, and say what became of each file."""
    jobs, left = started.jobs, started.left
    if not jobs:
        return _nothing_to_carry(left)
    rows: list[dict[str, Any]] = []
    await events.replayed(jobs, flow_run.get_id())
    to_push = jobs
    if refused is not None:
        rejected = [Outcome(job, error=error) for job, error in zip(jobs, refused, strict=True) if error]
        to_push = [job for job, error in zip(jobs, refused, strict=True) if error is None]
        if rejected:
            rows += await record(rejected)
        await events.validated(to_push, flow_run.get_id())
    rows += await _push_with_retries(to_push)
    await publish_table(jobs[0].flow.name, rows)
    bad = [f"{row['file']}: {row['result']}" for row in rows if not _is(row, "delivered", "waiting")]
    bad += [file.describe() for file in left if not file.delivered() and file.state != TransferState.waiting]
    waiting = [f"{row['file']} {row['result']}{WAITING_NOTE}" for row in rows if _is(row, "waiting")]
    waiting += [file.describe() for file in left if file.state == TransferState.waiting]
    total = len(rows) + len(left)
    summary = f"{total - len(bad) - len(waiting)} of {total} files delivered"
    if started.again:
        summary += f" ({started.again} failed before, carried again by this retry)"
    if started.woken:
        summary += f" ({started.woken} waiting before, carried at once by this retry)"
    return _ended(summary, bad, waiting)


def _is(row: dict[str, Any], *states: str) -> bool:
    return str(row["result"]).split(":", 1)[0] in states


def _ended(summary: str, bad: list[str], waiting: list[str]) -> State[Any]:
    """Completed when every file was delivered; Failed when one failed (or was rejected); else,
    with files waiting, Failed named "Waiting": not Completed, because they are not there yet."""
    more = f" (and {len(waiting)} waiting)" if bad and waiting else ""
    if bad:
        return Failed(message=f"{summary}; {bad[0]}{more}")
    if waiting:
        others = f" (and {len(waiting) - 1} more waiting)" if len(waiting) > 1 else ""
        return Failed(name="Waiting", message=f"{summary}; {waiting[0]}{others}")
    return Completed(message=summary)


def _nothing_to_carry(left: list[Left]) -> State[Any]:
    """A run with nothing to carry (run again after every file was settled): say what became of them."""
    open_ = [file for file in left if not file.delivered()]
    if not open_:
        return Completed(message=f"nothing left to carry: {_count(left, 'file')} delivered before")
    delivered = len(left) - len(open_)
    bad = [file.describe() for file in open_ if file.state != TransferState.waiting]
    waiting = [file.describe() for file in open_ if file.state == TransferState.waiting]
    return _ended(f"{delivered} of {len(left)} files delivered", bad, waiting)


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
        results = await push.with_options(task_run_name=f"push {label}")(as_is(jobs), attempt)
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
