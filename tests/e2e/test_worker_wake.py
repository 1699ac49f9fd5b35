"""A worker is woken by Prefect's event stream for each run scheduled on its pool
(deployments/scheduled_wake.py): it asks Prefect at once instead of at its next poll. Shown with
a worker that polls once an hour (its one poll in the hour comes at its start, before it can take
runs, and no other worker serves the pool): every file is still delivered, one after another,
each by a Completed Prefect run that carries the worker's name (the run went through Prefect as
any other: Pending, the worker's limit).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from tests.e2e.helpers import PartnerClient, finished_run, unique
from tests.system import run_system
from tests.waiting import wait_for

PASSWORD = "wake-partner-pw-1"
WAIT = 120.0  # a busy machine: generous, and never a timing assertion
FILES = 3


def test_runs_start_when_scheduled_though_the_worker_polls_hourly() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="tradelane-wake-") as out,
        run_system(TRADELANE_RUNNER_POLL_SECONDS="3600") as system,
    ):
        partner, endpoint, flow = unique("wake"), unique("dir"), unique("flow")
        dest = Path(out)
        system.cli("partner", "add", partner, "--password", PASSWORD)
        system.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(dest))
        system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint)
        with PartnerClient(system, partner, PASSWORD) as client:
            upload = client.folder_ids()["upload"]
            for i in range(FILES):
                name = f"po_{i}.json"
                assert client.upload(name, b'{"po": %d}' % i, upload).status_code == 201
                wait_for(lambda name=name: (dest / name).exists(), f"{name} delivered", timeout=WAIT)  # type: ignore[misc]
        rows = system.wait_for(lambda rows: len(rows) == FILES, timeout=WAIT, partner=partner)
        # `up`'s worker alone on the pool: runs of up to 200 files, nothing to share a burst with.
        said = (system.home / "up.log").read_text()
        assert re.search(r"runs of up to 200 files \((0 workers|1 worker) online on pool tradelane\)", said)
        assert "runs of up to 50" not in said and "could not count the workers" not in said
        runner = (system.home / "logs" / "runner.log").read_text()
        assert "woken by Prefect's events for runs scheduled on work pool" in runner
        assert "the event stream of scheduled runs failed" not in runner
        assert {row["state"] for row in rows} == {"delivered"}
        for row in rows:
            run = finished_run(system, row["flow_run_id"], timeout=WAIT)
            assert run["state_type"] == "COMPLETED"
            assert run["labels"].get("prefect.worker.name")
