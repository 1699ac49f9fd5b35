"""pull: load a transfer's job and mark it running; for polling sources, take new files in."""

from __future__ import annotations

from anyio import to_thread
from prefect import task
from prefect.cache_policies import NO_CACHE

from core import delivery, polling
from core.delivery import Job
from core.endpoints.base import FileInfo


@task(name="pull", cache_policy=NO_CACHE)
async def pull(transfer_ids: list[int]) -> list[Job]:
    """The batch's jobs, marked running; transfers an earlier run already finished are left out."""
    return await to_thread.run_sync(delivery.start, transfer_ids)


@task(name="list new files", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
async def list_new(data_flow_id: int) -> list[FileInfo]:
    """What the polling source holds that this data flow has not taken yet."""
    source = await to_thread.run_sync(polling.load, data_flow_id)
    return await to_thread.run_sync(polling.new_files, source)


@task(name="pull file", cache_policy=NO_CACHE, task_run_name="pull {info.path}")
async def pull_file(data_flow_id: int, info: FileInfo) -> int:
    """Stream one file from the source into the intake; returns its receipt id."""
    source = await to_thread.run_sync(polling.load, data_flow_id)
    receipt = await to_thread.run_sync(polling.pull, source, info)
    assert receipt.id is not None
    return receipt.id


@task(name="after pull", cache_policy=NO_CACHE, task_run_name="after pull {info.path}", retries=2)
async def after_pull(data_flow_id: int, info: FileInfo) -> str:
    """Delete, move or keep the file at the source, as the data flow says."""
    source = await to_thread.run_sync(polling.load, data_flow_id)
    return await to_thread.run_sync(polling.after_pull, source, info)
