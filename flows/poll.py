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
from core.redact import install_log_scrubber, scrub_known
from flows import names
from flows.events import install_intake_events
from tasks.as_is import as_is
from tasks.pull import list_new, pull_files


@flow(name=names.POLL, flow_run_name="{flow_name}: poll", log_prints=False, persist_result=False)
async def poll(data_flow_id: int, flow_name: str = "") -> State[Any]:
    """List what is new at the source, then take it in with one `pull files` task run."""
    install_log_scrubber()
    install_intake_events()  # each pulled file: tradelane.file.received
    files: list[FileInfo] = await list_new(data_flow_id)
    rows: list[dict[str, Any]] = []
    if files:
        what = files[0].path if len(files) == 1 else f"{len(files)} files"
        pull = pull_files.with_options(task_run_name=f"pull {what}")
        rows = scrub_known(await pull(data_flow_id, as_is(files)))
    if rows:
        key = "pulled-" + "".join(c if c.isalnum() else "-" for c in (flow_name or str(data_flow_id)).lower())
        await acreate_table_artifact(table=rows, key=key[:100], description="Files pulled from the source")
    failed = [r for r in rows if r["result"].startswith("failed")]
    summary = f"{len(rows) - len(failed)} of {len(rows)} new files pulled"
    if failed:
        return Failed(message=f"{summary}; {failed[0]['file']}: {failed[0]['result']}")
    return Completed(message=summary if rows else "nothing new")
