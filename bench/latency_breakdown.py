"""Where one file's upload→delivered time goes, step by step, on a real `tradelane up`.

    python -m bench.latency_breakdown [N]    # N sequential 14-byte REST uploads to a folder (default 30)

Each file's timeline from the store's and Prefect's own timestamps (one machine, one clock): the
upload's request, the intake's commit (`received_at`), the flow run's creation (by the
dispatcher), its Pending state (a worker took it), Running (the forked run's engine began),
the `start` task run's start and the `push` task run's end, the transfer recorded (`finished_at`),
the file seen in the folder by this client. Prints the median and p95 of each step and of the
whole, and the load average before and after.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.skeleton import setup_flow, wait_file
from tests.system import System, run_system

STEPS = [
    ("upload → intake commit", "sent", "received"),
    ("intake → run created (debounce, claim, create the run)", "received", "created"),
    ("run created → Pending (worker poll)", "created", "pending"),
    ("Pending → Running (submit, fork, engine)", "pending", "running"),
    ("Running → start task begins", "running", "start_task"),
    ("start task → push task ends", "start_task", "push_end"),
    ("push ends → recorded", "push_end", "recorded"),
    ("recorded → seen by client", "recorded", "seen"),
]


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _run_marks(prefect: httpx.Client, flow_run_id: str) -> dict[str, float | None]:
    run = prefect.get(f"/flow_runs/{flow_run_id}").json()
    states = prefect.get("/flow_run_states/", params={"flow_run_id": flow_run_id}).json()
    first: dict[str, float | None] = {}
    for state in sorted(states, key=lambda s: s["timestamp"]):
        first.setdefault(state["type"], _ts(state["timestamp"]))
    tasks = prefect.post(
        "/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 50}
    ).json()
    by_name = {t["name"].split(" ", 1)[0]: t for t in tasks}
    start, push = by_name.get("start"), by_name.get("push")
    return {
        "created": _ts(run["created"]),
        "pending": first.get("PENDING"),
        "running": first.get("RUNNING"),
        "start_task": _ts(start["start_time"]) if start else None,
        "push_end": _ts(push["end_time"]) if push else None,
    }


def measure(system: System, work: Path, n: int) -> list[dict[str, float | None]]:
    dest = work / "breakdown"
    client = setup_flow(system, "brk", dest)
    upload_id = client.folder_ids()["upload"]
    client.upload("warmup.json", b"{}", upload_id)
    wait_file(dest / "warmup.json")
    sent: dict[str, tuple[float, float]] = {}
    for i in range(n):
        name = f"po_{i:03}.json"
        t0 = time.time()
        assert client.upload(name, b'{"po": %d}' % i, upload_id).status_code == 201
        wait_file(dest / name)
        sent[name] = (t0, time.time())
    client.close()
    time.sleep(2)  # the last runs' task runs and states are written
    rows = {r["file"]: r for r in system.transfers() if r["file"] in sent}
    marks = []
    with httpx.Client(base_url=system.prefect_api, timeout=30) as prefect:
        for name, (t0, seen) in sent.items():
            row = rows[name]
            mark: dict[str, float | None] = {"sent": t0, "seen": seen}
            mark["received"] = _ts(row["received_at"])
            mark["recorded"] = _ts(row["finished_at"])
            mark.update(_run_marks(prefect, row["flow_run_id"]))
            marks.append(mark)
    return marks


def report(marks: list[dict[str, float | None]]) -> None:
    def stats(values: list[float]) -> str:
        if len(values) < 2:
            return "n/a"
        p95 = statistics.quantiles(values, n=20)[18]
        return f"p50 {statistics.median(values) * 1000:7.0f} ms   p95 {p95 * 1000:7.0f} ms"

    for label, a, b in STEPS:
        values = [m[b] - m[a] for m in marks if m[a] is not None and m[b] is not None]  # type: ignore[operator]
        print(f"  {label:58} {stats(values)}")
    total = [m["seen"] - m["sent"] for m in marks]  # type: ignore[operator]
    print(f"  {'upload → seen (whole)':58} {stats(total)}")


def main(n: int, **env: str) -> None:
    print(f"load average before: {os.getloadavg()}")
    with (
        tempfile.TemporaryDirectory(prefix="tradelane-bench-", dir=os.environ.get("BENCH_DIR")) as tmp,
        run_system(**env) as system,
    ):
        marks = measure(system, Path(tmp), n)
    print(f"load average after: {os.getloadavg()}")
    report(marks)


def _env(args: list[str]) -> dict[str, Any]:
    return dict(arg.split("=", 1) for arg in args)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 30
    main(count, **_env([a for a in sys.argv[1:] if "=" in a]))
