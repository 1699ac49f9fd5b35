"""A worker's default name in Prefect: stable per host and home, distinct for workers running at once."""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import socket
from pathlib import Path

# The name locks a worker holds for its lifetime (see default_worker_name), kept open here.
_held_names: list[int] = []


def default_worker_name(home: Path) -> str:
    """The same for every start of a worker on this host with this home (a restart is the same
    worker in the Prefect UI, not a new entry each time), yet distinct for two running at once:
    `<host>-<8 hex of the home's path>`, and for a second worker running meanwhile in the same
    home `-2`, `-3`…: each holds an exclusive lock on `worker-name[-N].lock` in the home while it
    runs (released by the kernel when its process ends, however it ends)."""
    stem = f"{socket.gethostname()}-{hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]}"
    for number in itertools.count(1):
        suffix = "" if number == 1 else f"-{number}"
        fd = os.open(home / f"worker-name{suffix}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held_names.append(fd)
        return stem + suffix
    raise AssertionError("unreachable")
