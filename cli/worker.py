"""`tradelane worker`: run flow runs of the tradelane work pool on this machine (deployments/worker.py).

Start as many as you like, on as many machines: each takes at most `--limit` runs at once, so work
spreads over them. Which Prefect server: `PREFECT_API_URL` (with your `PREFECT_API_AUTH_STRING`, or
TRADELANE_PREFECT_AUTH) when you set it, else the one `tradelane up` runs on this machine.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from core.config import Settings


def worker_prefect_environment(settings: Settings) -> None:
    """Point this process (and its flow runs) at the Prefect server; a user's PREFECT_* stay as given."""
    from cli.supervisor import apply_prefect_environment
    from deployments.heartbeat import HEARTBEAT_VARIABLE, heartbeat_seconds

    if "PREFECT_API_URL" not in os.environ:
        apply_prefect_environment(settings)  # this machine's `up`, as its own children see it
    else:
        if settings.prefect_auth:
            os.environ.setdefault("PREFECT_API_AUTH_STRING", settings.prefect_auth)
        # Flow runs start in a directory of their own: the store and mailboxes must not depend on it.
        os.environ["TRADELANE_HOME"] = str(settings.home_dir)
    # The heartbeat period each run is started with (deployments/worker.py), here as well: the fork
    # server then builds the very Prefect settings a run is handed, which the run takes rather than
    # building them twice (deployments/forkserver_settings.py). The user's value, at least 30 s.
    os.environ[HEARTBEAT_VARIABLE] = str(heartbeat_seconds())


def worker(
    name: Annotated[
        str | None,
        typer.Option(
            help="The worker's name in Prefect and in its runs' labels (default: the host and a hash of "
            "TRADELANE_HOME, the same at each restart; -2, -3… for more at once in one home)."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Runs at once (default TRADELANE_RUNNER_LIMIT)."),
    ] = None,
) -> None:
    """Run flow runs of the work pool TRADELANE_WORK_POOL (created if missing) until stopped."""
    import asyncio

    from rich.markup import escape

    from cli.common import err
    from core import storage
    from core.config import get_settings
    from deployments.heartbeat import DeadRunSettingError

    settings = get_settings()
    # Before Prefect is imported: it reads its settings (the API URL, the auth string) then.
    try:
        worker_prefect_environment(settings)
    except DeadRunSettingError as exc:  # the heartbeat period its runs would be started with
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    from deployments.work_pool import WorkPoolError
    from deployments.worker import make_worker, prepare_process, run_worker

    try:
        storage.check(settings)  # a storage bucket that does not exist refuses the start, by name
    except storage.StorageError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    prepare_process(settings, "worker")
    try:
        asyncio.run(run_worker(make_worker(settings, name=name, limit=limit), settings))
    except KeyboardInterrupt:  # Ctrl-C: Prefect's worker has said it stopped
        pass
    except WorkPoolError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
