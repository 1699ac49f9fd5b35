"""A worker reads a run's deployment once while it submits the run (deployments/worker.py): Prefect's
worker reads it to see that it still exists and again to build the run's configuration, a round trip
to the Prefect server each on every file's way. Outside a submission, and in the run's own task
once the submission is over, every read goes to the server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.workers.process import ProcessWorker

from core.config import Settings
from deployments import worker as worker_module
from deployments.worker import make_worker, reading_once_per_submission


class CountingReads:
    """A stand-in for the client's read_deployment (pure logic: what reaches the server)."""

    def __init__(self) -> None:
        self.asked: list[UUID | str] = []

    async def __call__(self, deployment_id: UUID | str) -> Any:
        self.asked.append(deployment_id)
        await asyncio.sleep(0)
        return {"id": deployment_id, "read": len(self.asked)}


def test_a_submission_reads_each_deployment_once_and_only_while_it_lasts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = CountingReads()
    read = reading_once_per_submission(reads)  # type: ignore[arg-type]
    one, other = uuid4(), uuid4()
    later: dict[str, Any] = {}

    async def prefects_submit_run(self: ProcessWorker, flow_run: Any) -> None:
        """What Prefect's `_submit_run` does with the deployment, and the run's task it starts."""
        first = await read(one)  # does it still exist?
        again = await read(one)  # the run's configuration
        assert again is first
        await read(other)
        run_task_may_read = asyncio.Event()

        async def the_runs_task() -> None:  # lives as long as the run; inherits this context
            await run_task_may_read.wait()
            later["read"] = await read(one)

        later["task"] = asyncio.create_task(the_runs_task())
        later["release"] = run_task_may_read

    monkeypatch.setattr(ProcessWorker, "_submit_run", prefects_submit_run)
    worker = make_worker(Settings(home=tmp_path), name="reads-test")

    async def main() -> None:
        await read(one)  # outside a submission: read
        await worker._submit_run(object())  # type: ignore[arg-type]
        assert reads.asked == [one, one, other]
        later["release"].set()  # the run, after its submission: reads the server again
        await later["task"]
        assert reads.asked == [one, one, other, one] and later["read"]["read"] == 4
        await worker._submit_run(object())  # type: ignore[arg-type]  # a second run: its own reads
        assert reads.asked == [one, one, other, one, one, other]

    asyncio.run(main())
    assert worker_module._reads_of_this_submission.get() is None
