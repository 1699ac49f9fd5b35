"""What emitting the `tradelane.file.*` events costs per delivered file (issue 16's goal: ≤ 5 % slower).

    python -m bench.events_cost [--quick] [--files N] [--rounds R]

One home and one data flow (a partner's mailbox to a folder); `tradelane up` is started once per
round, alternately with `TRADELANE_EVENTS=on` and `off` (the setting is read by every process `up`
starts, so a round needs its own start; the store, the Prefect server's database and the flow stay).
Each round uploads N × 2 KiB files from 4 concurrent clients and waits until all are delivered.
For each setting it prints the median over its rounds of

* files/s: N / (the last file delivered − the first upload), wall clock;
* CPU ms per file: the CPU every process of `up` spent on the round (bench/burst_cpu.py's reading
  of /proc; the Prefect server, which stores the events, included), which moves much less than
  wall time when the machine is shared;

and the ratios on/off. Rounds alternate, so a machine that gets busier or a store that grows
weighs on both settings alike. `--quick`: 50 files, 2 rounds each. `--profile DIR`: py-spy (raw
collapsed stacks; `pip install py-spy`) samples `up`'s process and the Prefect server during every round,
into DIR/<round>-<setting>-<process>.txt, and a summary by category is printed per setting.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.burst_cpu import tree_cpu
from bench.scaleout import categorize
from tests.e2e.helpers import PartnerClient
from tests.system import System, run_system, start, stop

PASSWORD = "Events_cost_P@ss1!"
PARTNER = "costly"
CLIENTS = 4
PROFILE_RATE = 100  # samples per second
PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"


def prefect_server_pid(root: int) -> int | None:
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == root and b"prefect_server" in cmd:
            return pid
    return None


@contextmanager
def profiled(system: System, out: Path | None, tag: str) -> Iterator[None]:
    """py-spy on `up`'s own process and on the Prefect server while the block runs."""
    if out is None:
        yield
        return
    assert system.proc is not None
    out.mkdir(parents=True, exist_ok=True)
    pids = {"up": system.proc.pid, "prefect-server": prefect_server_pid(system.proc.pid)}
    spies = []
    for name, pid in pids.items():
        if pid is None:
            continue
        args = [PY_SPY, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE), "--format", "raw"]
        args += ["--nonblocking", "-o", str(out / f"{tag}-{name}.txt")]
        spies.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1)  # py-spy attaches
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has, then exits
        for spy in spies:
            spy.wait(timeout=60)


def profile_summary(out: Path, files: int) -> None:
    """Per setting and process: ms sampled busy per file, and its largest categories."""
    for events in ("on", "off"):
        for name in ("up", "prefect-server"):
            samples: Counter[str] = Counter()
            rounds = 0
            for path in out.glob(f"*-{events}-{name}.txt"):
                rounds += 1
                for line in path.read_text(errors="replace").splitlines():
                    stack, _, count = line.rpartition(" ")
                    if stack and count.isdigit():
                        samples[categorize(stack)] += int(count)
            total = sum(samples.values())
            if not total:
                continue
            busy = total / PROFILE_RATE * 1000 / files / rounds
            parts = ", ".join(f"{c} {n * 100 / total:.0f}%" for c, n in samples.most_common(5))
            print(f"  events {events:3} {name:15} {busy:6.1f} ms busy/file: {parts}")


def flow_run_count(system: System) -> int:
    """How many flow runs the Prefect server holds."""
    answer = httpx.post(f"{system.prefect_api}/flow_runs/count", json={}, timeout=30)
    answer.raise_for_status()
    return int(answer.json())


def round_once(system: System, dest: Path, tag: str, files: int) -> tuple[float, dict[str, float]]:
    """Upload `files` files named for `tag`; (files/s to the last delivery, CPU ms per file by
    process role, "all" their sum, "runs" the flow runs that carried them)."""
    assert system.proc is not None
    body = os.urandom(2048)
    errors: list[str] = []

    def client(k: int) -> None:
        with PartnerClient(system, PARTNER, PASSWORD) as c:
            upload = c.folder_ids()["upload"]
            for i in range(k, files, CLIENTS):
                response = c.upload(f"{tag}-{i:05}.bin", body, upload)
                if response.status_code != 201:
                    errors.append(response.text)

    runs_before = flow_run_count(system)
    cpu_before = tree_cpu(system.proc.pid)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} uploads refused: {errors[0]}")
    deadline = time.monotonic() + 600
    while sum(1 for _ in dest.glob(f"{tag}-*.bin")) < files:
        if time.monotonic() > deadline:
            raise TimeoutError(f"round {tag}: not every file delivered in 600 s")
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    cpu_after = tree_cpu(system.proc.pid)
    per_file = {role: (spent - cpu_before.get(role, 0.0)) * 1000 / files for role, spent in cpu_after.items()}
    per_file["all"] = sum(per_file.values())
    # Each run costs ~1.5 s of CPU whatever it carries: how a burst happens to be cut into runs
    # moves a round's CPU per file more than anything else, so it is shown with each round.
    per_file["runs"] = flow_run_count(system) - runs_before
    return files / elapsed, per_file


def restart(system: System, events: str) -> None:
    stop(system)
    system.poller = None  # a fresh CLI process after the restart
    system.env["TRADELANE_EVENTS"] = events
    start(system)
    time.sleep(3)  # the runner registers the data flow's deployment again before anything is timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 files, 2 rounds per setting")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per setting")
    parser.add_argument("--profile", type=Path, help="py-spy `up` and the Prefect server, into DIR")
    args = parser.parse_args()
    files, rounds = (50, 2) if args.quick else (args.files, args.rounds)
    dest = Path(tempfile.mkdtemp(prefix="tradelane-events-cost-"))
    results: dict[str, list[tuple[float, dict[str, float]]]] = {"on": [], "off": []}
    with run_system(TRADELANE_EVENTS="on") as system:
        system.cli("partner", "add", PARTNER, "--password", PASSWORD)
        system.cli("endpoint", "add", "cost-dir", "--type", "file", "--path", str(dest))
        system.cli("flow", "add", "cost-flow", "--source", f"mailbox:{PARTNER}", "--dest", "cost-dir")
        time.sleep(3)
        round_once(system, dest, "warmup", 10)  # the first run of a deployment pays for imports
        order = ["on", "off"] * rounds
        for n, events in enumerate(order):
            if n:
                restart(system, events)
            with profiled(system, args.profile, f"r{n}-{events}"):
                files_per_s, cpu_per_file = round_once(system, dest, f"r{n}-{events}", files)
            results[events].append((files_per_s, cpu_per_file))
            said = f"{files_per_s:6.1f} files/s  {cpu_per_file['all']:6.1f} ms CPU/file"
            said += f"  in {cpu_per_file.pop('runs'):.0f} runs"
            print(f"  round {n + 1}: events {events:3}  {said}  (load {os.getloadavg()[0]:.1f})", flush=True)
    rate = {s: statistics.median(r for r, _ in results[s]) for s in ("on", "off")}
    roles = sorted({role for s in results for _, per_file in results[s] for role in per_file})
    cpu = {
        s: {role: statistics.median(c.get(role, 0.0) for _, c in results[s]) for role in roles} for s in rate
    }
    print(f"{files} × 2 KiB files per round, {rounds} rounds per setting (medians):")
    print(f"  {'':46} {'events on':>12} {'events off':>12}")
    print(f"  {'files/s':46} {rate['on']:12.1f} {rate['off']:12.1f}")
    for role in roles:
        print(f"  {role + ' (ms CPU/file)':46} {cpu['on'][role]:12.1f} {cpu['off'][role]:12.1f}")
    print(
        f"  on/off: files/s × {rate['on'] / rate['off']:.3f} "
        f"({(1 - rate['on'] / rate['off']) * 100:+.1f} % slower), "
        f"CPU per file × {cpu['on']['all'] / cpu['off']['all']:.3f}; load average {os.getloadavg()}"
    )
    if args.profile:
        profile_summary(args.profile, files)


if __name__ == "__main__":
    main()
