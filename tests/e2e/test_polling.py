"""A polling data flow on a Prefect schedule: files at a remote source are taken once and delivered."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx

from tests.e2e.helpers import delivered, unique
from tests.system import System


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
    # Later polls find nothing new: still exactly three transfers.
    time.sleep(5)
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
    deadline = time.monotonic() + 30
    while not httpx.get(f"{system.prefect_api}/deployments/name/poll/{flow}").json()["paused"]:
        assert time.monotonic() < deadline, "disabling the flow did not pause its schedule"
        time.sleep(0.5)
