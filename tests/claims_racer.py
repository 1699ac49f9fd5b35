"""A child process for the claim races (tests/test_claims_race.py), configured by environment
(TRADELANE_HOME, TRADELANE_DATABASE_URL) like any tradelane process.

    python -m tests.claims_racer dispatch GO_FILE STOP_FILE   a dispatcher's claim loop, no Prefect,
        from the moment GO_FILE exists:
        `Dispatcher._claim`, then each batch "launched" as the run Prefect would give its
        idempotency key (`run-<batch key>`) with `mark_launched`, and started by that run at once
        (`delivery.start_run`); prints one JSON line per batch
        it would start: {"key", "ids"}. Stops once STOP_FILE exists and nothing is left to launch.
    python -m tests.claims_racer replay GO_FILE ID   `tradelane replay ID` at the same moment as
        another; prints {"copy"}: the id of the transfer that carries the file again.
    python -m tests.claims_racer start RUN_ID GO_FILE ID...   a flow run's start: waits for GO_FILE,
        then `delivery.start_run(ids, RUN_ID)`; prints {"run", "jobs"} (the ids it carries).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

DEADLINE_SECONDS = 120.0


def wait_for(go_file: Path, deadline: float) -> None:
    """Say "ready" (imports done), then start at the same moment as the other racers: when the
    test creates `go_file`."""
    print("ready", flush=True)
    while not go_file.exists():
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.001)


def dispatch(go_file: Path, stop_file: Path) -> None:
    from core import delivery
    from deployments.dispatcher import Dispatcher

    dispatcher = Dispatcher()
    dispatcher._claim()  # connected and warm, like a dispatcher that has been running
    deadline = time.monotonic() + DEADLINE_SECONDS
    wait_for(go_file, deadline)
    while time.monotonic() < deadline:
        stopping = stop_file.exists()  # read before the claim: a last pass after the producer stopped
        batches = dispatcher._claim()
        for batch in batches:
            print(json.dumps({"key": batch.key, "ids": batch.transfer_ids}), flush=True)
            dispatcher._mark(batch.key, f"run-{batch.key}")
            # Its run starts at once: until a data flow's batch is taken by its run, the flow's
            # next partial batch waits (transfers.claim_batches), and here no Prefect starts runs.
            delivery.start_run(batch.transfer_ids, f"run-{batch.key}")
        if stopping and not batches:
            return
    raise SystemExit("the claim loop did not finish in time")


def start(run_id: str, go_file: Path, ids: list[int]) -> None:
    from core import delivery
    from core.db import get_engine

    get_engine().connect().close()  # connected, as a run is by the time it starts its batch
    wait_for(go_file, time.monotonic() + DEADLINE_SECONDS)
    started = delivery.start_run(ids, run_id)
    print(json.dumps({"run": run_id, "jobs": [job.transfer_id for job in started.jobs]}), flush=True)


def replay(go_file: Path, transfer_id: int) -> None:
    from core import transfers
    from core.db import session_scope
    from core.tenancy import scope_for_cli

    with session_scope() as session:
        scope = scope_for_cli(session, "home")
    wait_for(go_file, time.monotonic() + DEADLINE_SECONDS)
    with session_scope() as session:
        copy = transfers.replay(session, scope, transfer_id)
        session.flush()
        print(json.dumps({"copy": copy.id}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "dispatch":
        dispatch(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "replay":
        replay(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        start(sys.argv[2], Path(sys.argv[3]), [int(arg) for arg in sys.argv[4:]])
