"""Flow runs forked from the runner's fork server start with the object stores' SDKs imported and
S3's service model parsed, so a push does not pay for them (deployments/forkserver_warm.py)."""

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
from tests.test_forkserver_warm import report

start_flow_runs_from_forkserver()
context = multiprocessing.get_context("forkserver")
queue = context.Queue()
child = context.Process(target=report, args=(queue,))
child.start()
print(queue.get(timeout=120))
child.join()
"""


def report(queue: Any) -> None:
    """In the forked process: what it inherited, before it opens any endpoint."""
    already = {name: name in sys.modules for name in ("boto3", "azure.storage.blob", "core.endpoints.s3")}
    from core.endpoints import s3

    session = getattr(s3, "_session", None)  # the shared session (absent before it was shared)
    loader = session._session.get_component("data_loader") if session else None
    parsed = loader is not None and any(
        key[:3] == ("load_service_model", "s3", "service-2") for key in loader._cache
    )
    queue.put({**already, "s3 model parsed": parsed})


def test_a_forked_flow_run_starts_with_the_sdks_and_s3_model_loaded() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(
        {"boto3": True, "azure.storage.blob": True, "core.endpoints.s3": True, "s3 model parsed": True}
    )
