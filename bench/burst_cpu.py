"""`bench.skeleton burst`, with the CPU each part of `tradelane up` spent on it, per file.

    python -m bench.burst_cpu [FILES] [--profile DIR]   # DIR: py-spy of the whole tree, by role

Wall-clock files/s swings with whatever else the machine runs; the CPU seconds the processes of
`up` spend on a burst move much less. Each process's CPU (its own and that of its children it has
reaped: flow runs forked by the runner's fork server) is read from /proc when the burst starts
(the data flow set up, a first file carried, the clients logged in: what a running hub has done
once) and after its last delivery, and summed by role: `up` (the API, the dispatcher, the mailbox
servers), the Prefect server, the runner, and its fork server with the flow runs.

`--profile DIR`: py-spy (which must be on PATH) samples every process of `up` during the burst, flow
runs included, into DIR/all.txt (raw collapsed stacks, one root frame per process); what each role
was busy with is printed by the innermost telling frame (bench/scaleout.py's categories), and
`python -m bench.burst_cpu --top DIR ROLE` prints the functions it spent the most samples in.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench import skeleton
from bench.scaleout import categorize
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


RATE = 100  # py-spy samples per second
PASSED_ON = ("TRADELANE_EVENTS", "TRADELANE_DISPATCH_BATCH_SIZE")


@contextmanager
def spied(root: int, out: Path | None) -> Iterator[None]:
    """py-spy on `root` and every process under it (flow runs forked meanwhile too) while the block runs."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    args = ["py-spy", "record", "--pid", str(root), "--subprocesses", "--rate", str(RATE), "--format", "raw"]
    # --gil: only the thread that holds the GIL, i.e. Python running (not threads waiting on I/O).
    args += ["--gil", "--nonblocking", "-o", str(out / "all.txt")]
    spy = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it has, then exits
        spy.wait(timeout=120)


_PROCESS = re.compile(r"^process \d+:\"", re.DOTALL)


def _records(text: str) -> Iterator[str]:
    """py-spy's raw lines, a stack and its count each; a process frame's command line may hold
    newlines (the fork server's `-c` program): such a record spans lines, up to its count."""
    record = ""
    for line in text.splitlines():
        record = f"{record}\n{line}" if record else line
        if re.search(r" \d+$", line):
            yield record
            record = ""


def samples_by_role(out: Path) -> dict[str, Counter[str]]:
    """Each role's py-spy stacks (the process frame taken off) and their sample counts."""
    by_role: dict[str, Counter[str]] = defaultdict(Counter)
    for line in _records((out / "all.txt").read_text(errors="replace")):
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        processes = [i for i, frame in enumerate(frames) if _PROCESS.match(frame)]
        cmd = frames[processes[-1]] if processes else ""  # the innermost process frame is the sampled one
        rest = ";".join(frames[processes[-1] + 1 :] if processes else frames)
        if _waiting(frames[-1]):
            continue
        if "prefect_server" in cmd or "prefect server" in cmd:
            role = "prefect server"
        elif "forkserver" in cmd or "multiprocessing" in cmd:
            role = "fork server + flow runs"
        elif "deployments.serve" in cmd:
            role = "runner"
        else:
            role = "up"
        by_role[role][rest] += int(count)
    return by_role


# Leaf frames of a thread that waits (py-spy's idle detection misses some): not CPU, left out.
_WAITS = ("select (", "poll (", "wait (", "sleep (", "acquire (", "_recv_into", "recv (", "accept (")


def _waiting(leaf: str) -> bool:
    return any(mark in leaf for mark in _WAITS)


def profile_summary(out: Path, files: int) -> None:
    for role, stacks in sorted(samples_by_role(out).items()):
        kinds: Counter[str] = Counter()
        for stack, count in stacks.items():
            kinds[categorize(stack)] += count
        total = sum(kinds.values())
        parts = ", ".join(f"{c} {n * 100 / total:.0f}%" for c, n in kinds.most_common(6))
        print(f"  {role:24} {total / RATE * 1000 / files:6.1f} ms busy/file: {parts}")


def top(out: Path, role: str, n: int = 40) -> None:
    """The functions `role`'s samples were in (inclusive: anywhere on the stack), most first."""
    stacks = samples_by_role(out)[role]
    total = sum(stacks.values())
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        for frame in set(stack.split(";")):
            inclusive[frame] += count
    print(f"{role}: {total} samples")
    for frame, count in inclusive.most_common(n):
        print(f"  {count * 100 / total:5.1f}%  {frame[:150]}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--top"]:
        top(Path(argv[1]), argv[2], int(argv[3]) if len(argv) > 3 else 40)
        return
    profile = Path(argv[argv.index("--profile") + 1]) if "--profile" in argv else None
    files = int(argv[0]) if argv and argv[0].isdigit() else 1000
    bench_dir = os.environ.get("BENCH_DIR")
    # These, if set here, are passed on to `up` (e.g. TRADELANE_EVENTS=off: the events' cost left out).
    passed = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    with (
        tempfile.TemporaryDirectory(prefix="tradelane-bench-", dir=bench_dir) as tmp,
        run_system(**passed) as system,
    ):
        assert system.proc is not None
        root = system.proc.pid
        before: dict[str, float] = {}
        with ExitStack() as spying:

            def started() -> None:  # the flow set up, its first file carried, the clients logged in
                before.update(tree_cpu(root))
                spying.enter_context(spied(root, profile))

            r = skeleton.bench_burst(system, Path(tmp), files=files, started=started)
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
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if profile is not None:
        print("py-spy (busy samples, by the innermost telling frame):")
        profile_summary(profile, files)


if __name__ == "__main__":
    main(sys.argv[1:])
