"""start: mark a batch's transfers running and load their jobs (the files are read later, by push)."""

from __future__ import annotations

from anyio import to_thread
from prefect import task
from prefect.cache_policies import NO_CACHE

from core import delivery
from core.delivery import RunStart


@task(name="start", cache_policy=NO_CACHE)
async def start(transfer_ids: list[int], flow_run_id: str | None = None) -> RunStart:
    """The batch's jobs, marked running; transfers an earlier run already finished are left out,
    and failed ones this same run carried before are carried again (see `delivery.start_run`)."""
    return await to_thread.run_sync(delivery.start_run, transfer_ids, flow_run_id)
