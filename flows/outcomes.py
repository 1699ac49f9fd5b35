"""A transfer run's bookkeeping: record each file's outcome, emit its event, publish the run's table
and its link back to the console (core/links.py).

Plain steps of the flow, not tasks: bookkeeping needs no retry policy of its own, and task runs are
what the embedded Prefect server's SQLite pays for under a burst.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from anyio import to_thread
from prefect.artifacts import acreate_link_artifact, acreate_table_artifact
from prefect.runtime import flow_run

from core import delivery
from core.delivery import Outcome
from core.links import console_run_url
from core.models import TransferState
from core.notify import facts
from core.redact import scrub_known
from flows import events
from flows.provenance import provenance


async def record(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Write the batch's final states to the database, emit tradelane.file.<state> for each file, and
    return the artifact's rows."""
    if not outcomes:
        return []
    recorded = await to_thread.run_sync(delivery.record, outcomes)
    run_id = flow_run.get_id()
    rows = []
    planned: list[events.Planned] = []
    for outcome, result in zip(outcomes, recorded, strict=True):
        job, state = outcome.job, result.state
        reason = result.error or (delivery.describe(outcome.error) if outcome.error else "")
        if state is TransferState.waiting and outcome.error is not None:
            reason = delivery.waiting_error(outcome.error)  # "destination unreachable: …"
        # Events are readable by anyone who reaches Prefect: every secret this process has held
        # is hidden (core/notify/events.py), whatever an endpoint let through.
        details = {
            "destination": outcome.destination_uri,
            "error": reason or None,
            "next_attempt_at": result.next_attempt_at.isoformat() if result.next_attempt_at else None,
        }
        # A digest's window is by event time: the recorded time, not the emitting.
        planned.append((state.value, facts.of_job(job, run_id), result.at, details))
        rows.append(
            scrub_known(
                {
                    "transfer": job.transfer_id,
                    "file": job.receipt.name,
                    "size": job.receipt.size,
                    "sha256": job.receipt.sha256,
                    "destination": outcome.destination_uri or "",
                    "answer": (outcome.answer or {}).get("summary", ""),
                    "result": _result(state, reason, result.next_attempt_at),
                }
            )
        )
        rows[-1].update(scrub_known(provenance(job)))
    await events.emit_files(planned)
    return rows


def _result(state: TransferState, reason: str, next_attempt_at: datetime | None) -> str:
    """ "delivered", "failed: why", or "waiting: destination unreachable: …, next try 08:03 (UTC)"."""
    if state is TransferState.waiting:
        return delivery.waiting_result(reason, next_attempt_at)
    return state.value + (f": {reason}" if reason else "")


CONSOLE_LINK_KEY = "tradelane-console"
CONSOLE_LINK_TEXT = "These files in the tradelane console"


async def publish_table(flow_name: str, rows: list[dict[str, Any]]) -> None:
    """One table artifact per run, keyed by data flow so the UI shows its history, and one link
    artifact back to the console's transfers page showing this run's files (a run may carry 50:
    one link for the run, the table names each transfer's id)."""
    key = "files-" + "".join(c if c.isalnum() else "-" for c in flow_name.lower()).strip("-")
    extra = [key for key in ("derived", "envelope") if any(key in row for row in rows)]
    table = scrub_known([{**row, **{key: row.get(key, "") for key in extra}} for row in rows])
    await acreate_table_artifact(table=table, key=key[:100], description=f"Files carried by {flow_name}")
    run_id = flow_run.get_id()
    if run_id is not None:
        await acreate_link_artifact(
            link=console_run_url(run_id),
            link_text=CONSOLE_LINK_TEXT,
            key=CONSOLE_LINK_KEY,
            description=f"The transfers of this {flow_name} run, in the tradelane console",
        )
