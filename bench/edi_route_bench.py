"""edi-route on many small X12 files, against plain `transfer` in the same run (issue 14).

    python -m bench.edi_route_bench                 # 10,000 files each, 10 clients
    python -m bench.edi_route_bench --files 2000

One `tradelane up`. Two partners upload the same X12 interchanges (one 850 each, ~0.4 KiB) over
REST from 10 clients: one partner's data flow runs `transfer` to a folder, the other's runs
`edi-route` (its rules send the 850s to a folder endpoint; it reads each envelope while streaming).
Files/s = files delivered / time from the first upload to the last file at its destination. The
two kinds run one after the other, plain first, then edi-route, then plain again (the anchor is the
mean of the two plain runs). Goal (issue 14): edi-route ≥ 0.9 × plain.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from tests.e2e.helpers import PartnerClient
from tests.system import System, run_system
from tests.transforms.edi_samples import x12

PASSWORD = "edi-bench-Pass-1"
GOAL = 0.9


def burst(system: System, partner: str, folder: Path, files: int, clients: int, tag: str) -> float:
    """Upload `files` interchanges as `partner` from `clients` threads; files/s until all landed."""
    errors: list[str] = []

    def worker(k: int) -> None:
        client = PartnerClient(system, partner, PASSWORD)
        upload_id = client.folder_ids()["upload"]
        for i in range(k, files, clients):
            body = x12(control=i + 1)
            answer = client.upload(f"{tag}-{i:05}.edi", body, upload_id)
            if answer.status_code != 201:
                errors.append(answer.text)
        client.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 3600
    while sum(1 for _ in folder.glob(f"{tag}-*.edi")) < files - len(errors) and time.monotonic() < deadline:
        time.sleep(0.2)
    elapsed = time.perf_counter() - t0
    landed = sum(1 for _ in folder.glob(f"{tag}-*.edi"))
    if errors or landed != files:
        raise RuntimeError(f"{tag}: {landed} of {files} landed; {len(errors)} upload errors: {errors[:3]}")
    return files / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edi-bench-") as tmp, run_system() as system:
        work = Path(tmp)
        plain_out, erp = work / "plain", work / "erp"
        for partner in ("plain", "route"):
            system.cli("partner", "add", partner, "--password", PASSWORD)
        system.cli("endpoint", "add", "plain-out", "--type", "file", "--path", str(plain_out))
        system.cli("endpoint", "add", "erp", "--type", "file", "--path", str(erp))
        system.cli("flow", "add", "plain", "--source", "mailbox:plain", "--dest", "plain-out")
        rules = json.dumps([{"ST": "850", "dest": "erp"}])
        system.cli("flow", "add", "route", "--source", "mailbox:route", "--template", "edi-route",
                   "--param", f"rules={rules}")  # fmt: skip
        time.sleep(5)  # let the runner register both deployments
        half = args.files
        first = burst(system, "plain", plain_out, half, args.clients, "p1")
        routed = burst(system, "route", erp, half, args.clients, "r1")
        second = burst(system, "plain", plain_out, half, args.clients, "p2")
    plain = (first + second) / 2
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"{args.files} small X12 files each, {args.clients} REST clients, one tradelane up:")
    print(f"  transfer   {first:6.1f} files/s, then {second:6.1f} files/s (mean {plain:.1f})")
    print(f"  edi-route  {routed:6.1f} files/s")
    print(f"  ratio {routed / plain:.2f} (goal ≥ {GOAL})")


if __name__ == "__main__":
    main()
