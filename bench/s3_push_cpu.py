"""CPU seconds per GiB of an S3 push, ours against boto3's `upload_file`, on one moto server:
the client's (this process: user and system) and moto's, alternating rounds. On a loaded
two-core machine wall time follows CPU share, so this says what a push costs where
bench.flow_push_bench's wall-clock ratio swings by 2x from round to round.

    python -m bench.s3_push_cpu [--size-mib 1024] [--rounds 3]

"ours" is what a data flow's push does (core/delivery.py): the file read a chunk at a time through
a SHA-256 into the endpoint's write stream, then committed. boto3 does not hash the whole file; that SHA-256
(the delivery check) is the one cost ours has and the anchor has not, printed on its own line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cloud_push_bench import make_file
from core.delivery import _Hashing
from core.endpoints.base import CHUNK_SIZE
from core.endpoints.s3 import S3Endpoint
from tests.servers import moto_client, run_moto_server

MIB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def moto_pid(port: int) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"moto.server" in cmd and str(port).encode() in cmd:
                return int(proc.name)
    raise RuntimeError("moto server not found")


def measure(push: Callable[[], None], moto: int) -> tuple[float, float, float, float]:
    """(wall s, client user s, client system s, moto s) of one push."""
    before, moto0, t0 = resource.getrusage(resource.RUSAGE_SELF), process_cpu(moto), time.perf_counter()
    push()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (
        time.perf_counter() - t0,
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
        process_cpu(moto) - moto0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MIB
    gib = size / (1024 * MIB)
    with tempfile.TemporaryDirectory(prefix="s3-push-cpu-") as tmp, run_moto_server() as url:
        payload = make_file(Path(tmp), size)
        moto = moto_pid(int(url.rsplit(":", 1)[1]))
        s3: Any = moto_client(url)
        s3.create_bucket(Bucket="cpu")
        endpoint = S3Endpoint(
            {"bucket": "cpu", "endpoint_url": url}, {"access_key_id": "k", "secret_access_key": "s"}
        )
        s3.put_object(Bucket="cpu", Key="warm", Body=b"x")
        endpoint.stat("warm")

        def anchor() -> None:
            s3.upload_file(str(payload), "cpu", "anchor.bin")

        def ours() -> None:
            with payload.open("rb") as raw, endpoint.open_write("ours.bin") as out:
                reader = _Hashing(raw)
                while chunk := reader.read(CHUNK_SIZE):
                    out.write(chunk)
                out.commit()

        pushes = [("anchor", anchor), ("ours", ours)]
        for i in range(args.rounds):
            for name, push in pushes if i % 2 == 0 else pushes[::-1]:
                wall, user, system, moto_s = measure(push, moto)
                assert s3.head_object(Bucket="cpu", Key=f"{name}.bin")["ContentLength"] == size
                s3.delete_object(Bucket="cpu", Key=f"{name}.bin")
                client = (user + system) / gib
                print(
                    f"round {i + 1} {name:6}  wall {wall / gib:6.2f} s/GiB  client cpu {client:5.2f} s/GiB "
                    f"(user {user / gib:.2f}, sys {system / gib:.2f})  moto cpu {moto_s / gib:5.2f} s/GiB  "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        endpoint.close()
        t0 = time.thread_time()
        with payload.open("rb") as raw:
            digest = hashlib.sha256()
            while chunk := raw.read(MIB):
                digest.update(chunk)
        alone = (time.thread_time() - t0) / gib
        print(f"reading and SHA-256 of the file alone (the delivery check): {alone:.2f} s/GiB")


if __name__ == "__main__":
    main()
