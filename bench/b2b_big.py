"""B2B Connect across two instances: one big file from A's outbox to B, against curl to B's REST API.

    python -m bench.b2b_big              # 1 GiB
    python -m bench.b2b_big --mib 256

Two `tradelane up`s with their own homes and ports, paired by the real handshake (acme on A
invites, globex on B accepts). The figure: the file's size over A's `push` task time (Prefect's own
`total_run_time`: the signed upload to B, B hashing and staging it, B's intake and signed receipt),
against the anchor: `curl -T` of the same file to B's REST upload API (B's intake over HTTP, the
same work on B without the peer protocol), timed once before and once after the push, in the same
run. Peak RSS, sampled every 50 ms: A's flow-run processes and B's `up` process (which serves the
API and so the peer routes), against their idle sizes. Goal (issue 12): ratio ≥ 0.7, RSS flat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.flow_push_bench import flow_run_processes, rss_mib
from tests.b2b.outbox_doors import folder_named
from tests.servers import free_port
from tests.system import System, run_system

MIB = 1024 * 1024
GOAL = 0.7
PASSWORD = "Bench-b2b-Pass-41"
ENV = {"TRADELANE_PEER_ALLOW_PRIVATE": "true", "TRADELANE_MAX_UPLOAD_BYTES": str(8 * 1024 * MIB)}


@contextmanager
def paired(lake: Path) -> Iterator[tuple[System, System]]:
    """A (acme, sends through outbox `orders`) and B (globex, lands in file endpoint `lake`)."""
    lake.mkdir(parents=True, exist_ok=True)
    b_port, a_port = free_port(), free_port()
    with (
        run_system(api_port=b_port, TRADELANE_PUBLIC_URL=f"http://127.0.0.1:{b_port}", **ENV) as b,
        run_system(api_port=a_port, TRADELANE_PUBLIC_URL=f"http://127.0.0.1:{a_port}", **ENV) as a,
    ):
        b.cli("account", "add", "globex", "--email", "admin@globex.example", "--password", PASSWORD)
        b.cli("endpoint", "add", "lake", "--type", "file", "--path", str(lake), "--account", "globex")
        b.cli("partner", "add", "anchor", "--password", PASSWORD)
        a.cli("account", "add", "acme", "--email", "admin@acme.example", "--password", PASSWORD)
        invited = json.loads(
            a.cli(
                "connect", "invite", "--account", "acme", "--send", "--outbox", "orders",
                "--email", "admin@globex.example", "--name", "to-globex", "--json",
            ).stdout
        )  # fmt: skip
        b.cli(
            "connect",
            "accept",
            invited["link"],
            "--account",
            "globex",
            "--name",
            "from-acme",
            "--dest",
            "lake",
        )
        yield a, b


def token(system: System, username: str) -> str:
    answer = httpx.post(
        f"{system.api}/api/authentication",
        data={"grant_type": "password", "username": username, "password": PASSWORD},
        timeout=30,
    )
    answer.raise_for_status()
    value: str = answer.json()["access_token"]
    return value


def curl_upload(system: System, payload: Path, name: str) -> float:
    """`curl -T` of the file to the partner `anchor`'s upload folder on `system`; seconds."""
    bearer = token(system, "anchor")
    with httpx.Client(base_url=system.api, headers={"Authorization": f"Bearer {bearer}"}) as rest:
        upload_id = folder_named(rest, "upload")["id"]
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    subprocess.run(
        ["curl", "-sS", "-f", "-o", "/dev/null", "-X", "POST", "-T", str(payload),
         "-H", f"Authorization: Bearer {bearer}", "-H", "Content-Type: application/octet-stream",
         "-H", f'Content-Disposition: attachment; filename="{name}"',
         f"{system.api}/api/folders/{upload_id}/files"],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - t0


def push_seconds(a: System, name: str, timeout: float = 1800) -> float:
    """A's `push` task time for the file `name` (waits for it to be delivered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = json.loads(
            a.cli("transfers", "--connection", "to-globex", "--account", "acme", "--json").stdout
        )
        row = next((r for r in rows if r["file"] == name), None)
        if row and row["state"] == "delivered":
            break
        if row and row["state"] in ("failed", "rejected"):
            raise RuntimeError(f"{name}: {row}")
        time.sleep(0.5)
    else:
        raise TimeoutError(name)
    runs = httpx.post(
        f"{a.prefect_api}/flow_runs/filter", json={"sort": "START_TIME_DESC", "limit": 20}
    ).json()
    for run in runs:
        if name not in run["name"]:
            continue
        tasks = httpx.post(
            f"{a.prefect_api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [run["id"]]}}}
        ).json()
        pushes = [t for t in tasks if t["name"].startswith("push") and t["state_type"] == "COMPLETED"]
        if pushes:
            return float(pushes[0]["total_run_time"])
    raise RuntimeError(f"no completed push task for {name}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    size = args.mib * MIB
    with tempfile.TemporaryDirectory(prefix="b2b-big-") as tmp:
        work = Path(tmp)
        payload = work / "big.bin"
        with payload.open("wb") as f:
            block = os.urandom(4 * MIB)
            for _ in range(size // len(block)):
                f.write(block)
        lake = work / "lake"
        lake.mkdir()
        with paired(lake) as (a, b):
            time.sleep(3)  # let the runners register the connection's flows
            assert b.proc is not None
            b_pid = b.proc.pid
            idle_b, idle_a = rss_mib(b_pid), max([rss_mib(p) for p in flow_run_processes(a.home)] or [0.0])
            before = curl_upload(b, payload, "anchor-1.bin")
            peak = {"a": idle_a, "b": idle_b}
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak["b"] = max(peak["b"], rss_mib(b_pid))
                    for pid in flow_run_processes(a.home):
                        peak["a"] = max(peak["a"], rss_mib(pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                bearer = token(a, "admin@acme.example")
                with httpx.Client(
                    base_url=a.api, headers={"Authorization": f"Bearer {bearer}"}, timeout=1800
                ) as rest:
                    outbox = folder_named(rest, "b2b", "orders")["id"]
                    subprocess.run(["sync"], check=True)
                    with payload.open("rb") as body:
                        sent = rest.post(
                            f"/api/folders/{outbox}/files",
                            content=iter(lambda: body.read(MIB), b""),
                            headers={
                                "Content-Disposition": 'attachment; filename="big.bin"',
                                "Content-Type": "application/octet-stream",
                            },
                        )
                    assert sent.status_code == 201, sent.text
                pushed = push_seconds(a, "big.bin")
            finally:
                done.set()
                sampler.join()
            after = curl_upload(b, payload, "anchor-2.bin")
            landed = lake / "big.bin"
            deadline = time.monotonic() + 600
            while not (landed.exists() and landed.stat().st_size == size) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert landed.stat().st_size == size
    curl = (before + after) / 2
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"1 file of {args.mib} MiB from A's outbox to B (two tradelane up, paired by the handshake):")
    print(f"  A's push to B    {size / pushed / 1e6:7.1f} MB/s  ({pushed:.1f} s)")
    print(
        f"  curl -T to B's REST API {size / curl / 1e6:7.1f} MB/s  "
        f"(before {before:.1f} s, after {after:.1f} s)"
    )
    print(f"  ratio {curl / pushed:.2f} (goal ≥ {GOAL})")
    print(f"  peak RSS: A's flow-run processes {peak['a']:.0f} MiB (idle {idle_a:.0f} MiB), ", end="")
    print(f"B's up (API) {peak['b']:.0f} MiB (idle {idle_b:.0f} MiB)")


if __name__ == "__main__":
    main()
