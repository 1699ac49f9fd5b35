"""B2B Connect latency: outbox → the receiver's folder, against a plain data flow in the same run.

    python -m bench.b2b_latency            # 20 files of 4 KiB each way
    python -m bench.b2b_latency --files 50

Three `tradelane up`s at once: one for the plain and one-instance figures, and a pair (A, B) paired
by the real handshake. Plain: a partner uploads over REST into `upload/`, a data flow carries the
file to a folder endpoint. B2B on one instance: an account user uploads over REST into
`b2b/orders/`, the receiving account's landing flow carries it to its folder endpoint. Across two:
acme's user uploads into A's outbox, A's push flow carries it to B, B's landing flow into its folder.
The kinds are interleaved (plain, b2b, across, plain, …) so the machine's noise falls on all alike.
Latency = from the upload's first byte to the file's appearance at the destination, measured by the
client on the same clock. Prints p50/p95 of each and the ratios to plain (DESIGN-12 §8.3: one
instance should be close to 1; across two is two flow runs and a hop, so about twice).
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

from bench.b2b_big import paired
from bench.b2b_big import token as login
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
    with (
        tempfile.TemporaryDirectory(prefix="b2b-latency-") as tmp,
        run_system() as system,
        paired(Path(tmp) / "lake") as (a, _b),
    ):
        work = Path(tmp)
        partner = setup_flow(system, "plain", work / "plain")
        upload_id = partner.folder_ids()["upload"]
        b2b, outbox_id = b2b_sender(system, work / "b2b")
        across = httpx.Client(
            base_url=a.api, headers={"Authorization": f"Bearer {login(a, 'admin@acme.example')}"}, timeout=60
        )
        across_id = folder_named(across, "b2b", "orders")["id"]

        def send_plain(name: str, data: bytes) -> None:
            assert partner.upload(name, data, upload_id).status_code == 201

        def send_b2b(name: str, data: bytes) -> None:
            answer = upload(b2b, outbox_id, name, data)
            assert answer.status_code == 201, answer.text

        def send_across(name: str, data: bytes) -> None:
            answer = upload(across, across_id, name, data)
            assert answer.status_code == 201, answer.text

        kinds: dict[str, tuple[Callable[[str, bytes], None], Path]] = {
            "plain data flow": (send_plain, work / "plain"),
            "b2b one instance": (send_b2b, work / "b2b"),
            "b2b across two": (send_across, work / "lake"),
        }
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        for send, folder in kinds.values():
            measure(send, lambda n, f=folder: f / n, "warm.bin", body)  # type: ignore[misc]
        for i in range(args.files):
            for kind, (send, folder) in kinds.items():
                samples[kind].append(measure(send, lambda n, f=folder: f / n, f"f{i:03}.bin", body))  # type: ignore[misc]
        partner.close()
        b2b.close()
        across.close()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    plain = summary(samples["plain data flow"])
    for kind, values in samples.items():
        got = summary(values)
        print(
            f"{kind:17} p50 {got['p50']:.3f} s  p95 {got['p95']:.3f} s  max {got['max']:.3f} s"
            f"   ratio to plain p50 {got['p50'] / plain['p50']:.2f}  p95 {got['p95'] / plain['p95']:.2f}"
        )


if __name__ == "__main__":
    main()
