"""Run as `python -m tests.forkserver_probe SCRIPT`, like `up`'s runner (`-m deployments.serve`):
start one process the way a flow run is started (the fork server's context, deployments/worker.py)
running SCRIPT, and exit with its exit code."""

from __future__ import annotations

import runpy
import sys


def main(script: str) -> int:
    import prefect.flow_engine as engine

    from deployments.worker import start_flow_runs_from_forkserver

    start_flow_runs_from_forkserver()
    context = engine.multiprocessing.get_context()  # type: ignore[attr-defined]
    child = context.Process(target=runpy.run_path, args=(script,), kwargs={"run_name": "probe"})
    child.start()
    child.join(timeout=120)
    return int(child.exitcode if child.exitcode is not None else 99)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
