"""Issue 2 benchmarks against a real `tradelane up`, each figure beside an anchor measured in the same run.

    python -m bench.skeleton            # all three
    python -m bench.skeleton latency    # (a) upload→delivered p50/p95 over 50 sequential uploads
    python -m bench.skeleton burst      # (b) 1,000 × 2 KiB files from 10 concurrent clients
    python -m bench.skeleton big        # (c) 1 GiB upload vs `cp`, and the server's RSS growth

Goals (issue 2): p50 ≤ 2 s, p95 ≤ 4 s; ≥ 20 files/s; ratio to cp ≥ 0.3 and RSS growth ≤ 100 MiB.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from bench import run_timeline
from tests.e2e.helpers import PartnerClient
from tests.system import System, run_system

PASSWORD = "skeleton-Pass-1"
GIB = 1024**3


def setup_flow(system: System, partner: str, dest: Path) -> PartnerClient:
    system.cli("partner", "add", partner, "--password", PASSWORD)
    system.cli("endpoint", "add", f"{partner}-dir", "--type", "file", "--path", str(dest))
    system.cli("flow", "add", f"{partner}-flow", "--source", f"mailbox:{partner}", "--dest", f"{partner}-dir")
    time.sleep(3)  # let the runner register the new deployment before timing anything
    return PartnerClient(system, partner, PASSWORD)


def wait_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)


def bench_latency(system: System, work: Path, n: int = 50) -> dict[str, float]:
    dest = work / "latency"
    client = setup_flow(system, "lat", dest)
    upload_id = client.folder_ids()["upload"]
    client.upload("warmup.json", b"{}", upload_id)
    wait_file(dest / "warmup.json")
    samples = []
    for i in range(n):
        name = f"po_{i:03}.json"
        t0 = time.perf_counter()
        assert client.upload(name, b'{"po": %d}' % i, upload_id).status_code == 201
        wait_file(dest / name)
        samples.append(time.perf_counter() - t0)
    client.close()
    print("    latency flow runs, " + run_timeline.summary(system.prefect_api, "lat"))
    quantiles = statistics.quantiles(samples, n=20)
    return {"p50": statistics.median(samples), "p95": quantiles[18], "max": max(samples)}


def log_in(system: System, partner: str, timeout: float = 120) -> PartnerClient:
    """Log in as a partner's script should: a 503 (too many logins at once) is retried after its
    Retry-After, until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return PartnerClient(system, partner, PASSWORD)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(float(exc.response.headers.get("Retry-After", "1")))


def bench_burst(
    system: System,
    work: Path,
    files: int = 1000,
    clients: int = 10,
    started: Callable[[], None] | None = None,
) -> dict[str, float]:
    """`files` × 2 KiB from `clients` concurrent REST clients, timed to the last delivery.

    What a running hub does once, not per burst, is done before the clock starts: the data flow
    and its deployment, a first file carried (the worker's fork server warm, its first run done)
    and the clients' logins (an argon2 check each). `started` is called just before the first
    upload, for a caller that measures the burst itself (bench.burst_cpu's CPU and profile).
    """
    dest = work / "burst"
    client = setup_flow(system, "burst", dest)
    upload_id = client.folder_ids()["upload"]
    client.upload("warmup.bin", b"warm", upload_id)
    wait_file(dest / "warmup.bin", timeout=120)
    body = os.urandom(2048)
    errors: list[str] = []
    accepted = [0]
    sessions: list[PartnerClient] = []
    for _ in range(clients):
        try:
            sessions.append(log_in(system, "burst"))
        except Exception as exc:  # counted: the wait below must not wait for files never sent
            errors.append(f"login: {exc}")

    def worker(k: int, c: PartnerClient) -> None:
        for i in range(k, files, len(sessions)):
            response = c.upload(f"f{i:05}.bin", body, upload_id)
            if response.status_code != 201:
                errors.append(response.text)
            else:
                accepted[0] += 1
        c.close()

    if started is not None:
        started()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k, c)) for k, c in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    uploaded = time.perf_counter() - t0
    deadline = time.monotonic() + 600
    while sum(1 for _ in dest.glob("f*.bin")) < accepted[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    total = time.perf_counter() - t0
    delivered = sum(1 for p in dest.glob("f*.bin") if p.read_bytes() == body)
    runs = len({r["flow_run_id"] for r in system.transfers(flow="burst-flow") if r["file"] != "warmup.bin"})
    client.close()
    print("    burst flow runs, " + run_timeline.summary(system.prefect_api, "burst"))
    return {
        "delivered": delivered,
        "errors": len(errors),
        "upload_s": uploaded,
        "total_s": total,
        "files_per_s": delivered / total,
        "flow_runs": runs,
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def bench_big(system: System, work: Path, size: int = GIB) -> dict[str, float]:
    source = work / "big.bin"
    with source.open("wb") as f:
        block = os.urandom(4 * 1024 * 1024)
        for _ in range(size // len(block)):
            f.write(block)
    subprocess.run(["sync"], check=True)
    # Anchor: cp of the same file on the same disk (cache warm for both, like the upload).
    t0 = time.perf_counter()
    subprocess.run(["cp", str(source), str(work / "big.copy")], check=True)
    subprocess.run(["sync"], check=True)
    cp_s = time.perf_counter() - t0
    (work / "big.copy").unlink()

    system.cli("partner", "add", "big", "--password", PASSWORD)
    client = PartnerClient(system, "big", PASSWORD)
    client.http.timeout = httpx.Timeout(600)
    upload_id = client.folder_ids()["upload"]
    assert system.proc is not None
    pid = system.proc.pid
    baseline = rss_kib(pid)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.perf_counter()
    response = client.upload("big.bin", chunks(source), upload_id)
    subprocess.run(["sync"], check=True)
    up_s = time.perf_counter() - t0
    done.set()
    sampler.join()
    assert response.status_code == 201, response.text
    assert response.json()["length"] == size
    client.close()
    return {
        "cp_MBps": size / cp_s / 1e6,
        "upload_MBps": size / up_s / 1e6,
        "ratio_to_cp": cp_s / up_s,
        "rss_growth_MiB": (peak[0] - baseline) / 1024,
    }


def main(which: list[str]) -> None:
    which = which or ["latency", "burst", "big"]
    with tempfile.TemporaryDirectory(prefix="tradelane-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        with run_system() as system:
            print(f"machine: {os.cpu_count()} cores; system up at {system.api}")
            if "latency" in which:
                r = bench_latency(system, work)
                print(
                    f"(a) upload→delivered, 50 sequential: p50 {r['p50']:.2f} s (goal ≤ 2)  "
                    f"p95 {r['p95']:.2f} s (goal ≤ 4)  max {r['max']:.2f} s"
                )
            if "burst" in which:
                r = bench_burst(system, work)
                print(
                    f"(b) 1,000 × 2 KiB, 10 clients: {r['delivered']:.0f} delivered, "
                    f"{r['errors']:.0f} errors, {r['files_per_s']:.1f} files/s end to end (goal ≥ 20) "
                    f"in {r['flow_runs']:.0f} flow runs; uploads took {r['upload_s']:.1f} s"
                )
            if "big" in which:
                r = bench_big(system, work)
                print(
                    f"(c) 1 GiB upload: {r['upload_MBps']:.0f} MB/s vs cp {r['cp_MBps']:.0f} MB/s → ratio "
                    f"{r['ratio_to_cp']:.2f} (goal ≥ 0.3); server RSS growth {r['rss_growth_MiB']:.1f} MiB "
                    f"(goal ≤ 100)"
                )


def measure(
    latency_n: int, burst_files: int, burst_clients: int, rest_mib: int, rest_rounds: int
) -> dict[str, dict[str, float] | dict[str, list[float]]]:
    """Latency, burst and the REST upload against `cp` (bench.rest_upload) on one `up`, for
    `bench.all`: {"latency": ..., "burst": ..., "rest": {"cp": [s...], "curl": [s...]}}."""
    from bench import rest_upload

    with tempfile.TemporaryDirectory(prefix="tradelane-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        with run_system() as system:
            rest = rest_upload.measure_on(system, work, rest_mib * 1024 * 1024, rest_rounds)
            latency = bench_latency(system, work, latency_n)
            print(f"latency over {latency_n}: p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s")
            burst = bench_burst(system, work, burst_files, burst_clients)
            print(f"burst {burst_files} x 2 KiB, {burst_clients} clients: {burst['files_per_s']:.1f} files/s")
    return {"latency": latency, "burst": burst, "rest": rest}


if __name__ == "__main__":
    main(sys.argv[1:])
