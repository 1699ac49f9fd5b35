"""`bench.skeleton burst`, with the CPU each part of `tradelane up` spent on it, per file.

    python -m bench.burst_cpu [FILES]

Wall-clock files/s swings with whatever else the machine runs; the CPU seconds the processes of
`up` spend on a burst move much less. Each process's CPU (its own and that of its children it has
reaped: flow runs forked by the runner's fork server) is read from /proc before and after the
burst, and summed by role: `up` (the API, the dispatcher, the mailbox servers), the Prefect server,
the runner, and its fork server with the flow runs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from bench import skeleton
from tests.system import run_system

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14-17.
    return int(fields[1]), sum(int(v) for v in fields[11:15]) / TICK


def _role(pid: int, inherited: str) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return inherited or "?"
    if "prefect_server" in cmd or "prefect server" in cmd:
        return "prefect server"
    if "forkserver" in cmd:  # the fork server, and the flow runs it forked (and reaped)
        return "fork server + flow runs"
    if "deployments.serve" in cmd:
        return "runner (polls, reconciles)"
    return inherited or "other"


def tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds of every live process under `root` (and what they reaped), by role (the
    process's command line, else its parent's role)."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p)))}
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in stats.items():
        children[ppid].append(pid)
    by_role: dict[str, float] = defaultdict(float)
    by_role["up (api, dispatcher, mailboxes)"] = stats[root][1]
    todo = [(child, "") for child in children.get(root, [])]
    while todo:
        pid, inherited = todo.pop()
        role = _role(pid, inherited)
        by_role[role] += stats[pid][1]
        todo += [(child, role) for child in children.get(pid, [])]
    return dict(by_role)


def main(argv: list[str]) -> None:
    files = int(argv[0]) if argv else 1000
    bench_dir = os.environ.get("BENCH_DIR")
    with tempfile.TemporaryDirectory(prefix="tradelane-bench-", dir=bench_dir) as tmp, run_system() as system:
        assert system.proc is not None
        root = system.proc.pid
        before = tree_cpu(root)
        r = skeleton.bench_burst(system, Path(tmp), files=files)
        after = tree_cpu(root)
    print(
        f"burst {files} × 2 KiB: {r['delivered']:.0f} delivered, {r['files_per_s']:.1f} files/s, "
        f"{r['flow_runs']:.0f} flow runs"
    )
    total = 0.0
    for role in sorted(after):
        spent = after[role] - before.get(role, 0.0)
        total += spent
        print(f"  {role:34} {spent:7.2f} s CPU  {spent * 1000 / files:6.1f} ms/file")
    print(f"  {'all':34} {total:7.2f} s CPU  {total * 1000 / files:6.1f} ms/file")


if __name__ == "__main__":
    main(sys.argv[1:])
