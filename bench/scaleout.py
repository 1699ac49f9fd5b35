"""Scale-out figures (issue 15): 2 KiB files through the separated topology with 1, 2 and 4 workers.

    python -m bench.scaleout              # 1,000 files and 30 latency samples per worker count
    python -m bench.scaleout --quick      # 200 files and 10 samples
    python -m bench.scaleout --profile DIR   # also py-spy every role during the last burst (GIL held)

Every role is its own process with its own home (tests/roles/topology.py): PostgreSQL for the store
and for Prefect, `tradelane serve prefect|api|mailboxes|dispatcher`, the deployments registered
without a worker, and `tradelane worker`s, added one by one between the phases (1, then 2, then
4) on the same topology and store. Each phase: a new partner and data flow to a local folder, a
burst of N × 2 KiB REST uploads from CLIENTS concurrent clients, timed from the first upload to
the last file in the folder (files/s, and the ratio to 1 worker); then sequential uploads, each
timed from the upload's request to the file in the folder (p50/p95). Around each burst, the CPU
seconds of every role's processes (flow runs included) and of PostgreSQL's backends per database
(/proc) say what each file costs where ("pg: other": backends that ended meanwhile, such as a
flow run's connections, and PostgreSQL's own background processes). The machine is 2 cores
shared with whatever else runs: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench import run_timeline
from core.endpoints.tempname import is_temp_name
from deployments.naming import transfer_deployment
from tests.e2e.helpers import PartnerClient
from tests.roles.topology import Topology, process_tree, run_topology
from tests.system import run_postgres

PASSWORD = "scaleout-Pass-1"
BODY = os.urandom(2048)
CLIENTS = 8
TICKS = os.sysconf("SC_CLK_TCK")
GOAL_FILES_PER_S, GOAL_P50_S = 60.0, 1.0


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """A process's CPU, and that of its children it has reaped (finished flow runs)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICKS  # utime stime cutime cstime


def postgres_processes(postgres_url: str) -> dict[int, str]:
    """PostgreSQL's processes by pid: what each serves (its backend's database, else "postgres")."""
    port = postgres_url.rsplit(":", 1)[1].split("/", 1)[0]
    postmaster = None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "postgres" in cmdline and f"-p {port}" in cmdline and "pg_ctl" not in cmdline:
                postmaster = int(entry.name)
    assert postmaster is not None, "PostgreSQL's postmaster not found"
    found = {}
    for pid in process_tree(postmaster):
        try:
            title = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()).split()
        except OSError:
            continue
        # A backend's title: "postgres: USER DATABASE HOST(PORT) STATE".
        database = title[2] if len(title) > 2 and title[0] == "postgres:" and "(" in " ".join(title) else ""
        found[pid] = (
            "pg: store" if database.startswith("store_") else
            "pg: prefect" if database.startswith("prefect_") else "pg: other"
        )  # fmt: skip
    return found


def cpu_by_component(topology: Topology, postgres_url: str) -> Counter[str]:
    cpu: Counter[str] = Counter()
    for name, role in topology.roles.items():
        component = "workers" if name.startswith("worker") else name
        for pid in process_tree(role.proc.pid):
            cpu[component] += cpu_seconds(pid)
    for pid, component in postgres_processes(postgres_url).items():
        cpu[component] += cpu_seconds(pid)
    return cpu


def setup(topology: Topology, phase: str, dest: Path) -> tuple[str, str]:
    cli = topology.system.cli
    partner, flow = f"p{phase}", f"f{phase}"
    cli("partner", "add", partner, "--password", PASSWORD)
    cli("endpoint", "add", f"d{phase}", "--type", "file", "--path", str(dest))
    cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", f"d{phase}")
    url = f"{topology.prefect_api}/deployments/name/{transfer_deployment(flow, 'home')}"
    deadline = time.monotonic() + 60
    while httpx.get(url).status_code != 200:
        assert time.monotonic() < deadline, "the deployment was not registered"
        time.sleep(0.2)
    return partner, flow


def delivered(dest: Path) -> int:
    return sum(1 for entry in os.scandir(dest) if not is_temp_name(entry.name)) if dest.exists() else 0


def wait_delivered(dest: Path, n: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while delivered(dest) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{delivered(dest)} of {n} files delivered to {dest}")
        time.sleep(0.01)


def burst(topology: Topology, partner: str, dest: Path, files: int, prefix: str = "b") -> dict[str, float]:
    """`files` uploads from CLIENTS clients at once, timed until all are in `dest`."""
    errors: list[str] = []
    there = delivered(dest)

    # One login for all the clients: a burst of password checks at once is answered "busy".
    with PartnerClient(topology.system, partner, PASSWORD) as login:
        token, folder = login.token, login.folder_ids()["upload"]

    def client(k: int) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
        try:
            with httpx.Client(base_url=topology.system.api, headers=headers, timeout=120) as http:
                for i in range(k, files, CLIENTS):
                    response = http.post(
                        f"/api/folders/{folder}/files",
                        content=BODY,
                        headers={"Content-Disposition": f"attachment;filename={prefix}{i:05}.bin"},
                    )
                    if response.status_code != 201:
                        errors.append(response.text)
        except httpx.HTTPError as exc:  # said, rather than waited for
            errors.append(repr(exc))

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    uploaded = time.perf_counter() - began
    assert not errors and delivered(dest) <= there + files, errors[:3]
    wait_delivered(dest, there + files)
    total = time.perf_counter() - began
    return {"files_per_s": files / total, "total_s": total, "upload_s": uploaded}


def latency(topology: Topology, partner: str, dest: Path, samples: int) -> dict[str, float]:
    times = []
    with PartnerClient(topology.system, partner, PASSWORD) as client:
        folder = client.folder_ids()["upload"]
        for i in range(samples):
            name = f"l{i:03}.json"
            began = time.perf_counter()
            assert client.upload(name, b'{"po": %d}' % i, folder).status_code == 201
            while not (dest / name).exists():
                time.sleep(0.002)
            times.append(time.perf_counter() - began)
    p95 = statistics.quantiles(times, n=20)[18] if len(times) >= 2 else times[0]
    return {"p50": statistics.median(times), "p95": p95}


def runs_by_worker(topology: Topology, flow: str) -> Counter[str]:
    rows = topology.system.transfers(flow=flow)
    by_worker: Counter[str] = Counter()
    with httpx.Client(timeout=30) as http:
        for run_id in {row["flow_run_id"] for row in rows}:
            run = http.get(f"{topology.prefect_api}/flow_runs/{run_id}").json()
            by_worker[run["labels"].get("prefect.worker.name", "?")] += 1
    return by_worker


@contextmanager
def profiled(topology: Topology, out: Path | None) -> Iterator[None]:
    """py-spy (raw collapsed stacks, flow runs included) on every role while the block runs."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, role in topology.roles.items():
        # --gil: only the thread running Python. A thread waiting for PostgreSQL's answer in
        # psycopg's poll() counts as busy to py-spy otherwise, and round trips looked like CPU.
        args = ["py-spy", "record", "--pid", str(role.proc.pid), "--subprocesses", "--rate", "50", "--gil"]
        args += ["--format", "raw", "--nonblocking", "-o", str(out / f"{name}.txt")]
        spies.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has, then exits
        for spy in spies:
            spy.wait(timeout=60)


# Where a sample is, by the innermost frame that says so (checked from the leaf outwards).
CATEGORIES = [
    ("hashing", ("hashlib", "_Hashing")),
    ("store (SQL)", ("sqlalchemy", "psycopg", "sqlmodel", "asyncpg")),
    ("Prefect API calls", ("prefect/client/", "httpx", "httpcore")),
    ("storage writes", ("core/endpoints/file.py", "core/receipt_files.py", "core/mailbox/", "shutil")),
    ("pydantic", ("pydantic",)),
    ("imports", ("<frozen importlib",)),
    ("prefect (engine, server)", ("prefect/",)),
    ("tradelane", ("/core/", "/api/", "/flows/", "/tasks/", "/deployments/", "/mailboxes/")),
]


def categorize(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for category, marks in CATEGORIES:
            if any(mark in frame for mark in marks):
                return category
    return "other (asyncio, uvicorn, stdlib)"


def profile_summary(out: Path, files: int) -> None:
    for path in sorted(out.glob("*.txt")):
        samples: Counter[str] = Counter()
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                samples[categorize(stack)] += int(count)
        total = sum(samples.values())
        if not total:
            continue
        parts = ", ".join(f"{c} {n * 100 / total:.0f}%" for c, n in samples.most_common(5))
        print(f"  {path.stem:12} {total / 50 * 1000 / files:6.1f} ms in Python/file: {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="200 files and 10 latency samples")
    parser.add_argument("--files", type=int, help="files per burst (default 1000; --quick 200)")
    parser.add_argument("--samples", type=int, help="latency samples (default 30; --quick 10)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, ascending (default 1,2,4)")
    parser.add_argument("--profile", type=Path, help="py-spy every role during the last burst, into DIR")
    args = parser.parse_args()
    files = args.files or (200 if args.quick else 1000)
    samples = args.samples or (10 if args.quick else 30)
    counts = [int(x) for x in args.workers.split(",")]
    print(f"load average at start: {load()}  ({os.cpu_count()} cores)")
    results: dict[int, dict[str, Any]] = {}
    with run_postgres() as postgres_url, run_topology(postgres_url, workers=["worker-1"]) as topology:
        for n in counts:
            while (running := sum(name.startswith("worker-") for name in topology.roles)) < n:
                topology.add_worker(f"worker-{running + 1}")
            dest = topology.root / f"out-{n}"
            partner, flow = setup(topology, f"w{n}", dest)
            with PartnerClient(topology.system, partner, PASSWORD) as client:  # a warm-up file
                assert client.upload("warm.bin", BODY).status_code == 201
            wait_delivered(dest, 1)
            before = cpu_by_component(topology, postgres_url)
            result = burst(topology, partner, dest, files) | {"load": load()}
            cpu = cpu_by_component(topology, postgres_url) - before
            result["cpu_ms_per_file"] = {k: v * 1000 / files for k, v in cpu.most_common()}
            result["by_worker"] = dict(runs_by_worker(topology, flow))
            result["timeline"] = run_timeline.summary(topology.prefect_api, partner)
            result |= latency(topology, partner, dest, samples)
            results[n] = result
            ratio = result["files_per_s"] / results[counts[0]]["files_per_s"]
            print(
                f"{n} worker(s): {files} files in {result['total_s']:.1f} s = {result['files_per_s']:.1f} "
                f"files/s (×{ratio:.2f} of {counts[0]}; uploads took {result['upload_s']:.1f} s), "
                f"upload→delivered p50 {result['p50']:.2f} s p95 {result['p95']:.2f} s; load {result['load']}"
            )
            print(f"    runs by worker {result['by_worker']}; {result['timeline']}")
            total_cpu = sum(result["cpu_ms_per_file"].values())
            print(
                f"    CPU ms/file {total_cpu:.1f}: "
                + ", ".join(f"{k} {v:.1f}" for k, v in result["cpu_ms_per_file"].items() if v >= 0.05)
            )
        if args.profile:  # one more burst, under py-spy (which slows what it samples)
            with profiled(topology, args.profile):
                burst(topology, partner, dest, files, prefix="s")
            print(
                f"py-spy, a further {counts[-1]}-worker burst "
                "(samples holding the GIL, by the innermost telling frame):"
            )
            profile_summary(args.profile, files)
    best = max(r["files_per_s"] for r in results.values())
    p50 = min(r["p50"] for r in results.values())
    print(
        f"goals: ≥ {GOAL_FILES_PER_S:.0f} files/s (best {best:.1f}), p50 ≤ {GOAL_P50_S:.1f} s "
        f"(best {p50:.2f} s); load average at end: {load()}"
    )


if __name__ == "__main__":
    main()
