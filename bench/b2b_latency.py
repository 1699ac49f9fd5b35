"""B2B Connect latency: outbox → the receiver's folder, against a plain data flow in the same run.

    python -m bench.b2b_latency            # one instance, 20 files of 4 KiB each way
    python -m bench.b2b_latency --files 50

One `tradelane up`. Plain: a partner uploads over REST into `upload/`, a data flow carries the file
to a folder endpoint. B2B: an account user uploads over REST into `b2b/orders/`, the receiving
account's landing flow carries it to its folder endpoint. The two kinds are interleaved (plain, b2b,
plain, …) so the machine's noise falls on both alike. Latency = from the upload's first byte to the
file's appearance at the destination, measured by the client on the same clock. Prints p50/p95 of
each and the ratio b2b/plain (DESIGN-12 §8.3: one instance should be close to 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.skeleton import setup_flow, wait_file
from tests.b2b.outbox_doors import PASSWORD, cli_json, folder_named, upload
from tests.system import System, run_system


def b2b_sender(system: System, dest: Path) -> tuple[httpx.Client, str]:
    """Account `acme` sends to `home` through outbox `orders`, landing in `dest`: (REST client, outbox id)."""
    email = "admin@acme.example"
    system.cli("account", "add", "acme", "--email", email, "--password", PASSWORD)
    dest.mkdir(parents=True)
    system.cli("endpoint", "add", "landing", "--type", "file", "--path", str(dest))
    invited = cli_json(
        system, "connect", "invite", "--account", "acme", "--send", "--outbox", "orders",
        "--email", "ops@home.example", "--name", "to-home",
    )  # fmt: skip
    system.cli(
        "connect", "accept", invited["link"], "--account", "home", "--name", "from-acme", "--dest", "landing"
    )
    answer = httpx.post(
        f"{system.api}/api/authentication",
        data={"grant_type": "password", "username": email, "password": PASSWORD},
        timeout=30,
    )
    client = httpx.Client(
        base_url=system.api, headers={"Authorization": f"Bearer {answer.json()['access_token']}"}, timeout=60
    )
    time.sleep(3)  # let the runner register the landing deployment before timing anything
    return client, folder_named(client, "b2b", "orders")["id"]


def measure(
    send: Callable[[str, bytes], None], landed: Callable[[str], Path], name: str, body: bytes
) -> float:
    t0 = time.perf_counter()
    send(name, body)
    wait_file(landed(name))
    return time.perf_counter() - t0


def summary(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=20)
    return {"p50": statistics.median(samples), "p95": cuts[18], "max": max(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20)
    args = parser.parse_args()
    body = os.urandom(4096)
    with tempfile.TemporaryDirectory(prefix="b2b-latency-") as tmp, run_system() as system:
        work = Path(tmp)
        partner = setup_flow(system, "plain", work / "plain")
        upload_id = partner.folder_ids()["upload"]
        b2b, outbox_id = b2b_sender(system, work / "b2b")

        def send_plain(name: str, data: bytes) -> None:
            assert partner.upload(name, data, upload_id).status_code == 201

        def send_b2b(name: str, data: bytes) -> None:
            answer = upload(b2b, outbox_id, name, data)
            assert answer.status_code == 201, answer.text

        measure(send_plain, lambda n: work / "plain" / n, "warm.bin", body)
        measure(send_b2b, lambda n: work / "b2b" / n, "warm.bin", body)
        plain: list[float] = []
        b2b_samples: list[float] = []
        for i in range(args.files):
            plain.append(measure(send_plain, lambda n: work / "plain" / n, f"f{i:03}.bin", body))
            b2b_samples.append(measure(send_b2b, lambda n: work / "b2b" / n, f"f{i:03}.bin", body))
        partner.close()
        b2b.close()
    p, b = summary(plain), summary(b2b_samples)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"plain data flow  p50 {p['p50']:.3f} s  p95 {p['p95']:.3f} s  max {p['max']:.3f} s")
    print(f"b2b one instance p50 {b['p50']:.3f} s  p95 {b['p95']:.3f} s  max {b['max']:.3f} s")
    print(f"ratio b2b/plain  p50 {b['p50'] / p['p50']:.2f}  p95 {b['p95'] / p['p95']:.2f}")


if __name__ == "__main__":
    main()
