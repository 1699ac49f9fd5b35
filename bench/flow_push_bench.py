"""Issue 4 benchmark: a 1 GiB file pushed to S3 (moto) and Azure (Azurite) *through a data flow*,
as a ratio to the vendor SDK's direct upload of the same file in the same run.

    python -m bench.flow_push_bench [--size-mib 1024] [--only s3|azure] [--rounds N]

With `--rounds N` each flow carries N files one after the other and the best push is compared with
the best SDK upload (quiet, and with the system up: alternately before and after a push).

A partner uploads the file over the REST API to a `tradelane up` with two data flows (to S3 and to
Azure); the figure compared is each flow run's `push` task time (Prefect's own total_run_time), so
the upload itself is not counted. The anchors are boto3 `upload_file` and azure `upload_blob` of the
same file, timed twice: before the system starts (a quiet machine, the figure the issue asks for)
and again with the system up but idle (Prefect server, runner and API take their share of a small
machine's CPU, as they do during the flow's push). Each anchor's object is deleted after timing so
the emulators hold the same data when the flow pushes. Peak RSS is the largest resident size of any
flow-run process during the pushes.

While a flow runs the bench polls slowly: every poll starts a `tradelane transfers` process (about
a CPU-second), which on a two-core machine would otherwise take CPU from the push it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.cloud_push_bench import make_file
from tests.e2e.helpers import PartnerClient
from tests.endpoint_servers.azurite import run_azurite
from tests.servers import moto_client, run_moto_server
from tests.system import System, run_system

MIB = 1024 * 1024
GOAL = 0.95  # issue 17


def flow_run_processes(home: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"forkserver" in cmd and f"TRADELANE_HOME={home}".encode() in env:
            pids.append(int(proc.name))
    return pids


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            yield chunk


PASSWORD = "flow-push-Pass-1"
# (flow, destination endpoint, the SDK call its push is compared with)
TARGETS = [("to-s3", "lake", "boto3 upload_file"), ("to-azure", "blob", "upload_blob")]


def time_s3_anchor(payload: Path, s3: Any) -> float:
    """Seconds for boto3's `upload_file` of `payload`; the object is deleted afterwards, untimed."""
    t0 = time.perf_counter()
    s3.upload_file(str(payload), "anchor", "direct.bin")
    seconds = time.perf_counter() - t0
    s3.delete_object(Bucket="anchor", Key="direct.bin")
    return seconds


def time_azure_anchor(payload: Path, blobs: Any) -> float:
    """Seconds for azure's `upload_blob(open(f))`; the blob is deleted afterwards, untimed."""
    blob = blobs.get_blob_client("anchor", "direct.bin")
    t0 = time.perf_counter()
    with payload.open("rb") as f:
        blob.upload_blob(f, overwrite=True)
    seconds = time.perf_counter() - t0
    blob.delete_blob()
    return seconds


def wait_delivered(
    system: System, flow: str, landed: Callable[[], bool], count: int, timeout: float = 1800
) -> list[dict[str, Any]]:
    """Wait for the object at the destination with cheap SDK calls, then read the transfers once:
    each `tradelane transfers` is a CLI process costing about a CPU-second, taken from the push."""
    deadline = time.monotonic() + timeout
    while not landed():
        if time.monotonic() > deadline:
            raise AssertionError(f"flow {flow} did not deliver within {timeout} s")
        time.sleep(0.5)
    while time.monotonic() < deadline:
        rows = system.transfers(flow=flow)
        if len(rows) == count and all(row["state"] in ("delivered", "failed") for row in rows):
            assert all(row["state"] == "delivered" for row in rows), rows
            return rows
        time.sleep(1)
    raise AssertionError(f"flow {flow} did not record its delivery within {timeout} s")


def landed(flow: str, name: str, s3: Any, service: Any) -> Callable[[], bool]:
    if flow == "to-s3":
        return lambda: bool(s3.list_objects_v2(Bucket="flow", Prefix=name).get("KeyCount"))
    return lambda: bool(service.get_blob_client("flow", name).exists())


def push_times(system: System, rows: list[dict[str, Any]]) -> list[float]:
    """Each flow run's `push` task time (Prefect's total_run_time), in the order of the rows."""
    times = []
    for row in rows:
        tasks = httpx.post(
            f"{system.prefect_api}/task_runs/filter",
            json={"flow_runs": {"id": {"any_": [row["flow_run_id"]]}}},
        ).json()
        push = [t for t in tasks if t["name"].startswith("push") and t["state_type"] == "COMPLETED"]
        times.append(float(push[0]["total_run_time"]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--only", choices=["s3", "azure"])
    parser.add_argument("--rounds", type=int, default=1, help="files per flow; best of each is compared")
    args = parser.parse_args()
    measure(args.size_mib, only=args.only, rounds=args.rounds)


def measure(
    size_mib: int, only: str | None = None, rounds: int = 1, azure: bool = True
) -> dict[str, dict[str, float]]:
    """Run the benchmark (printing its lines); the best seconds per flow ("to-s3", "to-azure"):
    {"push": the flow's push task, "quiet": the SDK before `up`, "busy": the SDK with `up` idle}.
    `azure=False` is `only="s3"` (no Azurite started)."""
    if not azure:
        only = "s3"
    size = size_mib * MIB
    targets = [(f, d, sdk) for f, d, sdk in TARGETS if only in (None, f.removeprefix("to-"))]
    with (
        tempfile.TemporaryDirectory(prefix="flow-push-") as tmp,
        run_moto_server() as s3_url,
        contextlib.ExitStack() as stack,
    ):
        payload = make_file(Path(tmp), size)
        s3 = moto_client(s3_url)
        s3.create_bucket(Bucket="anchor")
        s3.create_bucket(Bucket="flow")
        service: Any = None
        if any(flow == "to-azure" for flow, _, _ in targets):
            az = stack.enter_context(run_azurite())
            service = az.service()
            service.create_container("anchor")
            service.create_container("flow")
        anchors = {
            "to-s3": lambda: time_s3_anchor(payload, s3),
            "to-azure": lambda: time_azure_anchor(payload, service),
        }

        quiet: dict[str, list[float]] = {flow: [] for flow, _, _ in targets}
        for _ in range(rounds):
            for flow, _, _ in targets:
                quiet[flow].append(anchors[flow]())

        with run_system() as system:
            system.cli("partner", "add", "bench", "--password", PASSWORD)
            system.cli(
                "endpoint",
                "add",
                "lake",
                "--type",
                "s3",
                "--bucket",
                "flow",
                "--endpoint-url",
                s3_url,
                "--access-key-id",
                "k",
                "--secret-access-key",
                "s",
            )
            if service is not None:
                system.cli(
                    "endpoint",
                    "add",
                    "blob",
                    "--type",
                    "azure",
                    "--container",
                    "flow",
                    "--connection-string",
                    az.connection_string,
                )
            peak = [0.0]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    for pid in flow_run_processes(system.home):
                        peak[0] = max(peak[0], rss_mib(pid))
                    time.sleep(0.2)

            time.sleep(3)  # let the system settle into its idle load
            sampler = threading.Thread(target=sample)
            sampler.start()
            client = PartnerClient(system, "bench", PASSWORD)
            client.http.timeout = httpx.Timeout(900)
            busy: dict[str, list[float]] = {flow: [] for flow, _, _ in targets}
            pushes: dict[str, list[float]] = {}
            rows: list[dict[str, Any]] = []
            for flow, dest, _ in targets:
                system.cli(
                    "flow", "add", flow, "--source", "mailbox:bench", "--dest", dest, "--pattern", f"{flow}*"
                )
                for i in range(rounds):
                    # The SDK's upload with the system up, alternately before and after the flow's.
                    if i % 2 == 0:
                        busy[flow].append(anchors[flow]())
                    # Held while the upload lands and its dirty pages are written back, so the push
                    # is timed on a quiet disk like the SDK's anchor (a disabled flow keeps files).
                    system.cli("flow", "disable", flow)
                    time.sleep(3)
                    name = f"{flow}-{i}.bin"
                    assert client.upload(name, chunks(payload)).status_code == 201
                    subprocess.run(["sync"], check=True)
                    system.cli("flow", "enable", flow)
                    rows = wait_delivered(system, flow, landed(flow, name, s3, service), i + 1)
                    if i % 2 == 1:
                        busy[flow].append(anchors[flow]())
                pushes[flow] = push_times(system, rows)
            done.set()
            sampler.join()
        print(
            f"1 file of {size // MIB} MiB, pushed by a data flow vs the SDK's direct upload "
            f"(same run, best of {rounds}):"
        )
        for flow, _, sdk in targets:
            ours, direct, loaded = min(pushes[flow]), min(quiet[flow]), min(busy[flow])
            each = ", ".join(f"{t:.2f}" for t in pushes[flow])
            print(
                f"  {flow:9} flow push {size / ours / 1e6:7.1f} MB/s   "
                f"{sdk} {size / direct / 1e6:7.1f} MB/s   ratio {direct / ours:.2f} (goal ≥ {GOAL})   "
                f"[{sdk} with the system up {size / loaded / 1e6:7.1f} MB/s, ratio {loaded / ours:.2f}]"
            )
            print(
                f"            push s: {each}; SDK quiet s: {', '.join(f'{t:.2f}' for t in quiet[flow])}; "
                f"SDK busy s: {', '.join(f'{t:.2f}' for t in busy[flow])}"
            )
        print(f"  peak RSS of a flow-run process during the pushes: {peak[0]:.0f} MiB")
    return {
        flow: {"push": min(pushes[flow]), "quiet": min(quiet[flow]), "busy": min(busy[flow])}
        for flow in pushes
    }


if __name__ == "__main__":
    main()
