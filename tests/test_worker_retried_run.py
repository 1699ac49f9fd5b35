"""A run retried from the Prefect UI while this worker still holds its last attempt's slot.

Prefect's worker takes a slot per run id; asked for a second slot for the same id, anyio raises a
RuntimeError that ends the worker's polling (seen in CI: after a Retry, `up`'s worker took no run
again). `TradelaneWorker` leaves such a run for its next poll instead.
"""

from __future__ import annotations

import asyncio
from uuid import uuid4

import anyio
import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import WorkerFlowRunResponse
from prefect.workers.process import ProcessWorker

from deployments.worker import TradelaneWorker


async def _submit_a_run_it_holds(worker: ProcessWorker) -> list[FlowRun]:
    run = FlowRun(id=uuid4(), flow_id=uuid4(), name="retried")
    worker._limiter = anyio.CapacityLimiter(4)
    worker._limiter.acquire_on_behalf_of_nowait(run.id)  # its last attempt is still being reaped
    responses = [WorkerFlowRunResponse(work_pool_id=uuid4(), work_queue_id=uuid4(), flow_run=run)]
    submitted = await worker._submit_scheduled_flow_runs(responses)
    assert worker._limiter.borrowed_tokens == 1
    return submitted


def test_prefects_own_worker_breaks_on_a_run_it_still_holds() -> None:
    worker = ProcessWorker(work_pool_name="tradelane", name="plain")
    with pytest.raises(RuntimeError, match="already holding"):
        asyncio.run(_submit_a_run_it_holds(worker))


def test_ours_leaves_it_for_the_next_poll() -> None:
    worker = TradelaneWorker(work_pool_name="tradelane", name="ours")
    assert asyncio.run(_submit_a_run_it_holds(worker)) == []
