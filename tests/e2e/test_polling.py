"""A polling data flow on a Prefect schedule: files at a remote source are taken once and delivered."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx

from tests.e2e.helpers import delivered, finished_run, prefect_paged, unique
from tests.servers import moto_client
from tests.system import System
from tests.waiting import wait_for


def test_scheduled_poll_takes_each_file_once_and_delivers_it(system: System, tmp_path: Path) -> None:
    remote, dest = tmp_path / "remote", tmp_path / "dest"
    (remote / "out").mkdir(parents=True)
    src, dst, flow = unique("src"), unique("dst"), unique("poller")
    system.cli("endpoint", "add", src, "--type", "file", "--path", str(remote))
    system.cli("endpoint", "add", dst, "--type", "file", "--path", str(dest))
    payloads = {f"asn_{i}.xml": b"<asn id='%d'>" % i + os.urandom(1000) + b"</asn>" for i in range(3)}
    for name, body in payloads.items():
        (remote / "out" / name).write_bytes(body)
    (remote / "out" / "ignore.tmp").write_bytes(b"not mine")
    system.cli(
        "flow",
        "add",
        flow,
        "--source",
        src,
        "--source-folder",
        "out",
        "--dest",
        dst,
        "--pattern",
        "*.xml",
        "--every",
        "2s",
        "--after-pull",
        "delete",
    )
    rows = system.wait_for(delivered(3), timeout=90, flow=flow)
    assert sorted(r["file"] for r in rows) == sorted(payloads)
    for name, body in payloads.items():
        assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest()
    assert sorted(p.name for p in (remote / "out").iterdir()) == ["ignore.tmp"]
    # Later polls find nothing new: still exactly three transfers after two more polls.
    polls = completed_polls(system, flow)
    wait_for(lambda: completed_polls(system, flow) >= polls + 2, "two more polls of the source", timeout=30)
    assert len(system.transfers(flow=flow)) == 3
    # The schedule lives in Prefect: the poll deployment has an interval schedule and completed runs.
    deployment = httpx.get(f"{system.prefect_api}/deployments/name/poll/{flow}").json()
    assert deployment["schedules"][0]["schedule"]["interval"] == 2.0
    # On demand: a new file is taken by `tradelane flow run` too.
    (remote / "out" / "late.xml").write_bytes(b"<late/>")
    assert "poll of" in system.cli("flow", "run", flow).stdout
    system.wait_for(delivered(4), timeout=60, flow=flow)
    assert (dest / "late.xml").read_bytes() == b"<late/>"
    # Disabling pauses the schedule (and frees the shared system's runner for other tests).
    system.cli("flow", "disable", flow)
    wait_for(
        lambda: httpx.get(f"{system.prefect_api}/deployments/name/poll/{flow}").json()["paused"],
        "disabling the flow to pause its schedule",
        timeout=30,
    )


def test_cron_schedule_polls_a_remote_source_and_keep_takes_only_what_changed(
    system: System, tmp_path: Path, moto_server: str
) -> None:
    s3 = moto_client(moto_server)
    bucket = unique("cron-src")
    s3.create_bucket(Bucket=bucket)
    first = {"a.csv": os.urandom(3000), "b.csv": os.urandom(4000)}
    for name, body in first.items():
        s3.put_object(Bucket=bucket, Key=f"out/{name}", Body=body)
    src, dst, flow, dest = unique("s3src"), unique("dst"), unique("cron"), tmp_path / "dest"
    s3_flags = ["--type", "s3", "--bucket", bucket, "--endpoint-url", moto_server]
    system.cli("endpoint", "add", src, *s3_flags, "--access-key-id", "k", "--secret-access-key", "s")
    system.cli("endpoint", "add", dst, "--type", "file", "--path", str(dest))
    args = ["--source", src, "--source-folder", "out", "--dest", dst, "--dest-path", "{receipt}-{name}"]
    system.cli("flow", "add", flow, *args, "--cron", "* * * * *", "--after-pull", "keep")
    try:
        assert poll_schedule(system, flow)["cron"] == "* * * * *"
        # No `flow run`: the first minute's scheduled poll takes both files.
        rows = system.wait_for(delivered(2), timeout=150, flow=flow)
        assert sorted(r["file"] for r in rows) == ["a.csv", "b.csv"]
        # keep: both stay at the source, remembered by size + ETag.
        kept = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
        assert kept == ["out/a.csv", "out/b.csv"]
        # Polled again with nothing changed: nothing new.
        run = finished_run(system, _run_id(system.cli("flow", "run", flow).stdout), timeout=60)
        assert run["state_type"] == "COMPLETED" and run["state"]["message"] == "nothing new", run["state"]
        # A changed file (new bytes, new ETag) is a new file; the unchanged one is not taken again.
        changed = os.urandom(3500)
        s3.put_object(Bucket=bucket, Key="out/a.csv", Body=changed)
        system.cli("flow", "run", flow)
        rows = system.wait_for(delivered(3), timeout=60, flow=flow)
        newest = max(rows, key=lambda r: r["id"])
        assert newest["file"] == "a.csv"
        assert newest["sha256"] == hashlib.sha256(changed).hexdigest()
        assert len(system.transfers(flow=flow)) == 3
    finally:
        system.cli("flow", "disable", flow, check=False)


def completed_polls(system: System, flow: str) -> int:
    """How many polls of the data flow's source have completed so far."""
    body = {
        "flow_runs": {"tags": {"all_": [f"flow:{flow}", "poll"]}, "state": {"type": {"any_": ["COMPLETED"]}}}
    }
    return len(prefect_paged(f"{system.prefect_api}/flow_runs/filter", body))


def poll_schedule(system: System, flow: str, timeout: float = 30) -> dict[str, object]:
    """The poll deployment's schedule, once the runner has served it (it reconciles every 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(f"{system.prefect_api}/deployments/name/poll/{flow}")
        if answer.status_code == 200 and answer.json().get("schedules"):
            schedule: dict[str, object] = answer.json()["schedules"][0]["schedule"]
            return schedule
        assert time.monotonic() < deadline, f"no scheduled poll deployment for {flow}: {answer.text[:200]}"
        time.sleep(0.5)


def _run_id(cli_output: str) -> str:
    """The flow-run id at the end of the URL `tradelane flow run` prints."""
    return " ".join(cli_output.split()).rsplit("/runs/flow-run/", 1)[1].split()[0]
