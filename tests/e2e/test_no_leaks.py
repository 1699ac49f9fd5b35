"""`tradelane up` closes what it opens: starting runs does not leave connections to Prefect behind.

The API process's dispatcher starts a Prefect run per batch. Each leaked client either stays open
(its connection to the Prefect API is still established) or is collected, which Python reports
as a ResourceWarning in up.log (every process of `up` runs with ResourceWarnings shown): either
way this test sees it.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.e2e.helpers import PartnerClient, delivered, unique
from tests.system import System, run_system, stop

PASSWORD = "leak-Partner-pw-1"
RUNS = 6


def connections_to(pid: int, port: int) -> int:
    """Established TCP connections of process `pid` to `port` on this machine (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            established = fields[3] == "01"
            if established and remote_port == port and fields[9] in inodes:
                count += 1
    return count


def _deliver_one_by_one(system: System, client: PartnerClient, flow: str, first: int, n: int) -> None:
    """n uploads, each delivered before the next arrives: n batches, so n runs started."""
    for i in range(first, first + n):
        assert client.upload(f"f{i}.txt", b"file %d" % i).status_code == 201
        system.wait_for(delivered(i + 1), flow=flow)


def test_starting_runs_leaves_no_connection_to_prefect_behind(tmp_path: Path) -> None:
    with run_system(PYTHONWARNINGS="always::ResourceWarning") as system:
        assert system.proc is not None
        prefect_port = int(system.env["TRADELANE_PREFECT_PORT"])
        name, flow, endpoint = unique("leak"), unique("flow"), unique("dir")
        system.cli("partner", "add", name, "--password", PASSWORD)
        system.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(tmp_path))
        system.cli("flow", "add", flow, "--source", f"mailbox:{name}", "--dest", endpoint)
        client = PartnerClient(system, name, PASSWORD)
        _deliver_one_by_one(system, client, flow, 0, 1)  # warm: the first run
        before = connections_to(system.proc.pid, prefect_port)
        _deliver_one_by_one(system, client, flow, 1, RUNS)
        after = connections_to(system.proc.pid, prefect_port)
        client.close()
        stop(system)
        log = (system.home / "up.log").read_text(errors="replace")
    assert after <= before, f"{after - before} more connections to Prefect after {RUNS} runs"
    leaks = [line for line in log.splitlines() if "ResourceWarning" in line]
    assert leaks == [], "\n".join(leaks)
