"""Imported into the runner's fork server: it, and every flow-run process it forks, die with their parent.

Without this, killing the runner (or `up`) would orphan the fork server and any flow runs in flight,
which would then retry a Prefect server that is gone. Their transfers are recovered by the
dispatcher on the next start, and every write is atomic, so a killed run loses nothing.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


die_with_parent()
# The parent-death signal is cleared by fork(); set it again in every flow run the server forks.
os.register_at_fork(after_in_child=die_with_parent)

# Every flow run is a fork of this process, which holds ~170k objects once the flows are imported.
# A run's first full garbage collection would walk them all, writing into each one's header, and
# so copy most of the inherited heap page by page: ~130 ms of CPU and ~12k page faults per run
# (bench/forkserver_gc.py). Frozen just before each fork, they are never collected by the child
# (nor by this server, which makes next to no garbage of its own); what the child makes is.
os.register_at_fork(before=gc.freeze)
