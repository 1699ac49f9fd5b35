"""The polling template: take each new file from a data flow's source endpoint, once, into the intake.

Runs on the data flow's schedule (or on demand with `tradelane flow run NAME`). Pulled files get
receipts and pending transfers like uploads; the dispatcher then carries them with the transfer
template, so every file has the same history whichever way it arrived.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from core.endpoints.base import FileInfo
from tasks.pull import after_pull, list_new, pull_file
from tasks.retry import retry_options


@flow(name="poll", flow_run_name="{flow_name}: poll", log_prints=False, persist_result=False)
async def poll(data_flow_id: int, flow_name: str = "") -> State[Any]:
    """Pull every new file, one after another (sources are usually rate- or connection-limited)."""
    files: list[FileInfo] = await list_new(data_flow_id)
    rows: list[dict[str, Any]] = []
    for info in files:
        row: dict[str, Any] = {"file": info.path, "size": info.size}
        try:
            receipt_id = await pull_file.with_options(**retry_options(3, 1.0))(data_flow_id, info)
            row["receipt"] = receipt_id
            row["result"] = "received; " + await after_pull(data_flow_id, info)
        except Exception as exc:  # one bad file must not stop the others; the run is marked failed
            row["result"] = f"failed: {exc}"
        rows.append(row)
    if rows:
        key = "pulled-" + "".join(c if c.isalnum() else "-" for c in (flow_name or str(data_flow_id)).lower())
        await acreate_table_artifact(table=rows, key=key[:100], description="Files pulled from the source")
    failed = [r for r in rows if r["result"].startswith("failed")]
    summary = f"{len(rows) - len(failed)} of {len(rows)} new files pulled"
    if failed:
        return Failed(message=f"{summary}; {failed[0]['file']}: {failed[0]['result']}")
    return Completed(message=summary if rows else "nothing new")
