"""Issue 4 benchmark: a 1 GiB push to S3 (moto) and to Azure Blob (Azurite) through our endpoints,
each beside the vendor SDK's own upload of the same file in the same run.

    python -m bench.cloud_push_bench                 # both, 1 GiB
    python -m bench.cloud_push_bench --size-mib 256  # smaller file
    python -m bench.cloud_push_bench --only azure    # one target

For each target it prints MB/s of the anchor (boto3 `upload_file`, azure `upload_blob(open(f))`,
both with their default settings) and of our endpoint (`open_write` + `copy_stream`), the ratio
ours / anchor (goal >= 0.7), and the peak growth of this process's RSS during each push (sampled
from /proc every 10 ms). Servers are started by the bench and run locally, so the numbers measure
client overhead and the emulators, not a network. The emulators are noisy (Azurite swings by
2x from one upload to the next), so each push runs `--rounds` times, alternating which goes
first, and the best time of each is compared; every round is printed too.

`push_via_endpoint(endpoint, path) -> seconds` is the measured unit; a "whole data flow" variant
can reuse it and the helpers here.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from core.endpoints.azure import AzureBlobEndpoint
from core.endpoints.base import Endpoint, copy_stream
from core.endpoints.s3 import S3Endpoint
from tests.endpoint_servers.azurite import Azurite, run_azurite
from tests.servers import run_moto_server

MIB = 1024 * 1024
GOAL = 0.7
PAGE = os.sysconf("SC_PAGE_SIZE")


def make_file(directory: Path, size: int) -> Path:
    """`size` bytes of incompressible data (a 16 MiB random block repeated), written once."""
    path = directory / f"payload-{size // MIB}MiB.bin"
    block = os.urandom(16 * MIB)
    with path.open("wb") as out:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            out.write(piece)
            left -= len(piece)
    return path


def push_via_endpoint(endpoint: Endpoint, path: Path, dest: str | None = None) -> float:
    """Stream the local file at `path` into `endpoint` (open_write + copy_stream); returns seconds."""
    start = time.perf_counter()
    with path.open("rb") as src, endpoint.open_write(dest or path.name) as stream:
        copy_stream(src, stream)
    return time.perf_counter() - start


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


@contextmanager
def rss_peak() -> Iterator[dict[str, int]]:
    """Samples this process's RSS while the block runs; yields a dict that gets `growth` (bytes)."""
    result = {"growth": 0}
    base = _rss()
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss())
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        result["growth"] = max(peak, _rss()) - base


@dataclass
class Measure:
    seconds: float
    rss_growth: int

    def mb_per_s(self, size: int) -> float:
        return size / 1e6 / self.seconds

    @staticmethod
    def best(runs: list[Measure]) -> Measure:
        """The fastest run, with the largest RSS growth seen in any run."""
        return Measure(min(r.seconds for r in runs), max(r.rss_growth for r in runs))


def measure(fn: Callable[[], Any]) -> Measure:
    with rss_peak() as rss:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return Measure(seconds, rss["growth"])


def rounds(
    anchor: Callable[[], Any],
    ours: Callable[[], Any],
    count: int,
    cleanup: Callable[[str], Any] = lambda _which: None,
) -> tuple[Measure, Measure]:
    """Run both `count` times, alternating which goes first; returns the best of each.
    `cleanup("anchor"|"ours")` runs after each push, outside the timing."""
    runs: dict[str, list[Measure]] = {"anchor": [], "ours": []}
    order = [("anchor", anchor), ("ours", ours)]
    for i in range(count):
        for which, fn in order if i % 2 == 0 else order[::-1]:
            runs[which].append(measure(fn))
            cleanup(which)
    for i, (a, o) in enumerate(zip(runs["anchor"], runs["ours"], strict=True), 1):
        print(f"  round {i}: anchor {a.seconds:6.2f} s, ours {o.seconds:6.2f} s", flush=True)
    return Measure.best(runs["anchor"]), Measure.best(runs["ours"])


def report(target: str, anchor_name: str, size: int, anchor: Measure, ours: Measure) -> float:
    ratio = ours.mb_per_s(size) / anchor.mb_per_s(size)
    verdict = "ok" if ratio >= GOAL else "BELOW GOAL"
    print(f"{target}: {size / MIB:.0f} MiB, best of each")
    print(
        f"  {anchor_name:<34} {anchor.mb_per_s(size):8.1f} MB/s  {anchor.seconds:6.1f} s"
        f"  peak RSS +{anchor.rss_growth / MIB:6.1f} MiB"
    )
    print(
        f"  {'our endpoint (open_write+copy)':<34} {ours.mb_per_s(size):8.1f} MB/s  {ours.seconds:6.1f} s"
        f"  peak RSS +{ours.rss_growth / MIB:6.1f} MiB"
    )
    print(f"  ratio ours/anchor: {ratio:.2f}  (goal >= {GOAL}: {verdict})")
    return ratio


# --- S3 (moto) ---------------------------------------------------------------------------------


def bench_s3(path: Path, size: int, count: int) -> float:
    print("\nS3 (moto server) ...", flush=True)
    creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret"}
    with run_moto_server() as url:
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **creds)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket)
        endpoint = S3Endpoint(
            {"bucket": bucket, "endpoint_url": url},
            {
                "access_key_id": creds["aws_access_key_id"],
                "secret_access_key": creds["aws_secret_access_key"],
            },
        )
        # Warm both clients (service models, connection pools) so neither pays a one-off cost.
        client.put_object(Bucket=bucket, Key="warm", Body=b"x")
        endpoint.stat("warm")

        def anchor() -> None:
            client.upload_file(str(path), bucket, "anchor.bin")

        def ours() -> None:
            push_via_endpoint(endpoint, path, "ours.bin")

        def cleanup(which: str) -> None:
            # Check the upload, then drop it: moto keeps objects in memory.
            key = f"{which}.bin"
            assert client.head_object(Bucket=bucket, Key=key)["ContentLength"] == size
            client.delete_object(Bucket=bucket, Key=key)

        first, second = rounds(anchor, ours, count, cleanup)
        endpoint.close()
        return report("S3 (moto server)", "boto3 upload_file", size, first, second)


# --- Azure (Azurite) ---------------------------------------------------------------------------


def bench_azure(path: Path, size: int, work: Path, count: int) -> float:
    print("\nAzure Blob (Azurite) ...", flush=True)
    with run_azurite(location=work / "azurite") as azurite:
        container = azurite.new_container("bench")
        endpoint = azure_endpoint(azurite, container)
        with azurite.service() as service:
            anchor_blob = service.get_blob_client(container, "anchor.bin")
            anchor_blob.upload_blob(b"warm", overwrite=True)
            endpoint.stat("anchor.bin")

            def anchor() -> None:
                with path.open("rb") as data:
                    anchor_blob.upload_blob(data, overwrite=True)

            def ours() -> None:
                push_via_endpoint(endpoint, path, "ours.bin")

            first, second = rounds(anchor, ours, count)
            assert anchor_blob.get_blob_properties().size == size
            assert endpoint.stat("ours.bin").size == size
        endpoint.close()
        return report("Azure Blob (Azurite)", "azure upload_blob(open(f))", size, first, second)


def azure_endpoint(azurite: Azurite, container: str) -> AzureBlobEndpoint:
    return AzureBlobEndpoint({"container": container}, {"connection_string": azurite.connection_string})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--only", choices=["s3", "azure"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="cloud-push-bench-") as tmp:
        work = Path(tmp)
        print(f"generating a {args.size_mib} MiB file in {work} ...", flush=True)
        path = make_file(work, size)
        ratios = {}
        if args.only in (None, "s3"):
            ratios["s3"] = bench_s3(path, size, args.rounds)
        if args.only in (None, "azure"):
            ratios["azure"] = bench_azure(path, size, work, args.rounds)
    print(
        "\nsummary: "
        + ", ".join(f"{name} {ratio:.2f}" for name, ratio in ratios.items())
        + f" (goal >= {GOAL})"
    )


if __name__ == "__main__":
    main()
