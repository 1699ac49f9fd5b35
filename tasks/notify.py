"""notify: record a transfer's outcome, emit its event, and publish a run's table artifact."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from prefect.artifacts import acreate_table_artifact
from prefect.events import emit_event

from core import delivery
from core.delivery import Job


# A plain step, not a task: bookkeeping needs no retry policy of its own, and one task run fewer per
# file matters to the embedded Prefect server's SQLite under a burst.
async def record(job: Job, error: BaseException | None, destination_uri: str | None) -> dict[str, Any]:
    """Write the final state to the store and emit tradelane.file.<state>; returns the artifact row."""
    state = await to_thread.run_sync(delivery.record_outcome, job, error, destination_uri)
    reason = delivery.describe(error) if error else ""
    emit_event(
        event=f"tradelane.file.{state.value}",
        resource={
            "prefect.resource.id": f"tradelane.transfer.{job.transfer_id}",
            "prefect.resource.name": job.receipt.name,
        },
        payload={
            "flow": job.flow.name,
            "partner": job.partner_name,
            "size": job.receipt.size,
            "sha256": job.receipt.sha256,
            "destination": destination_uri,
            "error": reason or None,
        },
    )
    return {
        "file": job.receipt.name,
        "size": job.receipt.size,
        "sha256": job.receipt.sha256,
        "destination": destination_uri or "",
        "result": state.value + (f": {reason}" if reason else ""),
    }


async def publish_table(flow_name: str, rows: list[dict[str, Any]]) -> None:
    """One table artifact per run, keyed by data flow so the UI shows its history."""
    key = "files-" + "".join(c if c.isalnum() else "-" for c in flow_name.lower()).strip("-")
    await acreate_table_artifact(table=rows, key=key[:100], description=f"Files carried by {flow_name}")
