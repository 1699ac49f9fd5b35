"""Flow runs forked from the runner's fork server start with Prefect's engines imported, Prefect's
pydantic models complete and the store's mappers configured (deployments/forkserver_ready.py), so
no run does that work again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The runner's own set-up, then one process forked the way a flow run is.
SCRIPT = """
import multiprocessing
from deployments.worker import start_flow_runs_from_forkserver
from tests.test_forkserver_ready import report

start_flow_runs_from_forkserver()
context = multiprocessing.get_context("forkserver")
queue = context.Queue()
child = context.Process(target=report, args=(queue,))
child.start()
print(queue.get(timeout=120))
child.join()
"""


def report(queue: Any) -> None:
    """In the forked process: what it inherited, before it does anything."""
    from sqlalchemy.orm import Mapper

    from core.models import Transfer
    from deployments.forkserver_ready import MODULES, _models

    incomplete = [m for m in _models() if not m.__dict__.get("__pydantic_complete__", True)]
    mapper = Transfer.__mapper__  # type: ignore[attr-defined]
    assert isinstance(mapper, Mapper)
    queue.put(
        {
            "imported": all(name in sys.modules for name in MODULES),
            "incomplete models": len(incomplete),
            "mappers configured": mapper.configured,
        }
    )


def test_a_forked_flow_run_starts_ready() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(
        {"imported": True, "incomplete models": 0, "mappers configured": True}
    )


# The worker's set-up alone: no flow run is started.
# multiprocessing forks the server and does not wait for its exec: until the exec is done, the
# command line reads empty (seen on a loaded machine), so it is read again until it is there.
STARTED_EARLY = """
import os, time
from multiprocessing import forkserver
from deployments.worker import start_flow_runs_from_forkserver

start_flow_runs_from_forkserver()
pid = forkserver._forkserver._forkserver_pid
deadline = time.monotonic() + 30
while not (command := open(f"/proc/{pid}/cmdline", "rb").read()) and time.monotonic() < deadline:
    time.sleep(0.05)
print(pid, command.replace(b"\\0", b" ").decode())
"""


def test_the_fork_server_starts_with_the_worker_not_with_its_first_run() -> None:
    """Its imports are done while the worker starts up, not while the first file waits."""
    done = subprocess.run(
        [sys.executable, "-c", STARTED_EARLY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pid, command = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(pid) > 0 and "forkserver" in command and "deployments.forkserver_ready" in command
