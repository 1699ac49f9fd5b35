"""How a worker starts a flow run: forked from the warm fork server, or a fresh interpreter.

    python -m bench.worker_start [N]    # N sequential uploads per way (default 30)

One `tradelane up` per way, the same file flow and N sequential 14-byte uploads each, timed from
the upload's 201 to the file in the destination folder: `TradelaneWorker` forking each run from
the fork server (TRADELANE_RUNNER_FORKSERVER=true, the default), then the same worker starting
each run as Prefect's own process worker does, `python -m prefect.engine` in a fresh interpreter
(=false). Prints p50/p95 of each and the ratio of the p50s.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bench.skeleton import bench_latency
from tests.system import run_system


def main(n: int) -> None:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tradelane-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        for way, forkserver in (("forked", "true"), ("fresh interpreter", "false")):
            work = Path(tmp) / way.replace(" ", "-")
            with run_system(TRADELANE_RUNNER_FORKSERVER=forkserver) as system:
                results[way] = r = bench_latency(system, work, n=n)
            print(f"{way}: upload→delivered p50 {r['p50']:.2f} s  p95 {r['p95']:.2f} s  max {r['max']:.2f} s")
    forked, fresh = results["forked"]["p50"], results["fresh interpreter"]["p50"]
    print(f"machine: {os.cpu_count()} cores; p50 fresh / forked = {fresh / forked:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
