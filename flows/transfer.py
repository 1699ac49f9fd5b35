"""The first flow template: pull → validate → push for a batch of one data flow's files."""

from __future__ import annotations

import asyncio
from typing import Any

from anyio import to_thread
from prefect import flow
from prefect.states import Completed, Failed, State

from tasks.notify import publish_table, record
from tasks.pull import pull
from tasks.push import push
from tasks.retry import retry_options
from tasks.validate import validate

# Files of one batch carried at once: enough to hide latency, few enough for 2 cores and open sockets.
CONCURRENCY = 8


@flow(name="transfer", log_prints=False, persist_result=False)
async def transfer(data_flow_id: int, transfer_ids: list[int]) -> State[Any]:
    """Carry each pending transfer of the batch to the data flow's destination."""
    gate = asyncio.Semaphore(CONCURRENCY)
    rows = await asyncio.gather(*(_carry(tid, gate) for tid in transfer_ids))
    done = [row for row in rows if row is not None]
    flow_name = await to_thread.run_sync(_flow_name, data_flow_id)
    if done:
        await publish_table(flow_name, done)
    bad = [row for row in done if not row["result"].startswith("delivered")]
    summary = f"{len(done) - len(bad)} of {len(done)} files delivered"
    if bad:
        return Failed(message=f"{summary}; {bad[0]['file']}: {bad[0]['result']}")
    return Completed(message=summary)


async def _carry(transfer_id: int, gate: asyncio.Semaphore) -> dict[str, Any] | None:
    async with gate:
        job = await pull(transfer_id)
        if job is None:
            return None
        error: BaseException | None = None
        destination_uri: str | None = None
        try:
            await validate(job)
            policy = retry_options(job.flow.retries, job.flow.retry_delay_seconds)
            destination_uri = await push.with_options(**policy)(job)
        except Exception as exc:  # the outcome is recorded below; the flow reports it in its final state
            error = exc
        return await record(job, error, destination_uri)


def _flow_name(data_flow_id: int) -> str:
    from core.db import session_scope
    from core.models import DataFlow

    with session_scope() as session:
        row = session.get(DataFlow, data_flow_id)
        return row.name if row else f"data-flow-{data_flow_id}"
