"""What a flow run's process pays for garbage collection over the heap it inherits from the fork server.

    python -m bench.forkserver_gc [--unfrozen]

Imports what the runner's fork server preloads (deployments/worker.py), then forks N children that
each run one full collection and exit, and prints their CPU and page faults (deterministic enough
to compare revisions: it counts work, not wall time). deployments/forkserver_guard.py freezes the
server's objects before each fork; `--unfrozen` unfreezes them in the child first, which is what
every run did before.
"""

from __future__ import annotations

import gc
import os
import resource
import sys

import deployments.forkserver_guard  # noqa: F401  (first in the fork server's preload)
import flows.poll
import flows.transfer  # noqa: F401

N = 20


def main(argv: list[str]) -> None:
    unfrozen = "--unfrozen" in argv
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    print(f"preloaded: {len(sys.modules)} modules, RSS {rss / 1024:.0f} MiB, {len(gc.get_objects())} objects")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(N):
        pid = os.fork()
        if pid == 0:
            if unfrozen:
                gc.unfreeze()
            gc.collect()  # what a run's process does sooner or later (automatic collections)
            os._exit(0)
        os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = (after.ru_utime - before.ru_utime) / N * 1000
    system = (after.ru_stime - before.ru_stime) / N * 1000
    faults = (after.ru_minflt - before.ru_minflt) / N
    label = "unfrozen (as before)" if unfrozen else "frozen"
    print(f"{label}: fork, full gc, exit: user {user:.1f} ms, sys {system:.1f} ms, {faults:.0f} faults/child")


if __name__ == "__main__":
    main(sys.argv[1:])
