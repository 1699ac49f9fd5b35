"""The roles of a tradelane installation, each defined once.

`tradelane up` runs them all on one machine (cli/supervisor.py); `tradelane serve <role>` runs one
alone (cli/serve.py), configured only by environment, with its own (possibly empty) home:

* prefect: the Prefect server, prefect's own CLI with SQLite writes begun IMMEDIATE;
* api: the REST API, AS2 and the web pages (uvicorn);
* mailboxes: the SFTP and FTP/FTPS servers (threads);
* dispatcher: claims pending transfers into batches and starts a Prefect run for each, and keeps
  the data flows' deployments registered on the work pool.

A role here is a coroutine that runs until `stop` is set, then shuts its part down and returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import httpx

from cli.allocator import tune_allocator
from core.config import Settings

log = logging.getLogger("tradelane.roles")

Role = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]

# Each SFTP connection is two threads handing data to each other (paramiko's transport thread
# decrypts, the session thread writes and hashes). With CPython's default 5 ms GIL switch interval
# the one that just released the GIL for I/O often waits out a whole interval to get it back; at
# 0.5 ms uploads and downloads run 1.3-1.8x faster (bench/sftp_bench.py).
GIL_SWITCH_INTERVAL = 0.0005


def tune_interpreter() -> None:
    """Process-wide settings the API and mailbox servers run best with: the GIL switch interval
    and malloc's thresholds (cli/allocator.py). Set by the process that runs them, never by a
    server's `start()`: a test or a library that starts one keeps its own."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    tune_allocator()


def prefect_server_command(settings: Settings) -> list[str]:
    """The Prefect server, on TRADELANE_PREFECT_HOST:TRADELANE_PREFECT_PORT."""
    return [
        sys.executable,
        "-m",
        "deployments.prefect_server",  # prefect's own CLI, with SQLite writes begun IMMEDIATE
        "server",
        "start",
        "--host",
        settings.prefect_host,
        "--port",
        str(settings.prefect_port),
    ]


async def _until_stopped_or_done(stop: asyncio.Event, task: asyncio.Task[Any]) -> None:
    await _until_stopped_or_any_done(stop, [task])


async def _until_stopped_or_any_done(stop: asyncio.Event, tasks: list[asyncio.Task[Any]]) -> None:
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def api(settings: Settings, stop: asyncio.Event) -> None:
    """REST API, AS2 and web pages: uvicorn with httptools, header size/time limits and connection
    caps (api/server.py), with the invitation accept page decided by the connections core."""
    import uvicorn

    from api.app import create_app
    from api.server import uvicorn_config
    from api.web.accept_service import CoreAcceptService
    from core.wakeups import notify_on_intake
    from flows.events import flush_received, install_intake_events

    tune_interpreter()
    notify_on_intake(settings)  # dispatchers in other processes hear of each upload (PostgreSQL)
    install_intake_events(batched=True)  # tradelane.file.received for each upload, in Prefect's event feed
    server = uvicorn.Server(uvicorn_config(create_app(accept_service=CoreAcceptService()), settings))
    # uvicorn takes SIGINT/SIGTERM itself while it serves and raises them again once the API has
    # stopped, so they reach `stop` then, and the other roles shut down after it.
    serving = asyncio.create_task(server.serve(), name="api")
    try:
        await _until_stopped_or_done(stop, serving)
        server.should_exit = True
        await serving
    finally:
        await asyncio.to_thread(flush_received)  # the last uploads' events, before the process ends


def start_mailbox_servers(settings: Settings) -> list[Any]:
    """SFTP and FTP/FTPS in threads of this process, sharing one login ledger (and the API's, when
    it runs in the same process)."""
    from mailboxes.auth import MailboxAuth
    from mailboxes.ftp import FTPServer
    from mailboxes.sftp import SFTPServer

    tune_interpreter()
    auth = MailboxAuth(settings)
    started: list[Any] = []
    for server_class in (SFTPServer, FTPServer):
        server = server_class(settings, auth)
        server.start()
        started.append(server)
    return started


async def mailboxes(settings: Settings, stop: asyncio.Event) -> None:
    from core.wakeups import notify_on_intake
    from flows.events import flush_received, install_intake_events

    notify_on_intake(settings)  # dispatchers in other processes hear of each upload (PostgreSQL)
    install_intake_events(batched=True)  # tradelane.file.received for each upload, in Prefect's event feed
    servers = start_mailbox_servers(settings)
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.stop()
        await asyncio.to_thread(flush_received)  # the last uploads' events, before the process ends


def check_dead_run_bound(settings: Settings) -> None:
    """Refuse, before anything starts, a dead-run bound the heartbeat period cannot keep."""
    from deployments import dead_runs, heartbeat

    dead_runs.window_seconds(settings.dead_run_seconds, heartbeat.heartbeat_seconds())


async def dispatcher(
    settings: Settings, stop: asyncio.Event, runs_die_with_it: bool = False, keeps_deployments: bool = True
) -> None:
    """Pending transfers into Prefect runs; woken at once by uploads taken in by this process, by
    the store's notifications from other processes where it has them, else by its sweep.

    `runs_die_with_it`: the runs are carried by children of this process (`up`'s runner), so a run
    still Running when it starts died with the last one (Dispatcher.recover's boot check). A
    dispatcher on its own restarts while the runner or workers carry on: their runs are left alone,
    and a dead one is noticed by its state.

    `keeps_deployments`: it also keeps every data flow's deployment registered on the work pool
    (deployments/serve.py `keep_deployments`), so the roles alone plus workers are the whole
    cluster; several dispatchers doing so only repeat each other's writes. `up` leaves that to
    its runner child, which runs the same code."""
    from core.wakeups import listen_for_intake
    from deployments.dispatcher import Dispatcher

    dispatcher = Dispatcher(settings, runs_die_with_us=runs_die_with_it)
    running = [asyncio.create_task(dispatcher.run(), name="dispatcher")]
    if keeps_deployments:
        from deployments.serve import keep_deployments

        running.append(asyncio.create_task(keep_deployments(settings), name="deployments"))
    listener = listen_for_intake(settings, dispatcher.wake)
    try:
        await _until_stopped_or_any_done(stop, running)
    finally:
        for task in running:
            task.cancel()
        ended = await asyncio.gather(*running, return_exceptions=True)
        if listener is not None:
            await asyncio.to_thread(listener.stop)
    for result in ended:  # e.g. a work pool of another type (WorkPoolError): the role stops, saying so
        if isinstance(result, Exception):
            raise result


async def run_roles(
    settings: Settings, roles: Iterable[tuple[str, Role]], started: Callable[[], None] = lambda: None
) -> None:
    """Run the roles together until SIGINT/SIGTERM, or until one of them ends (then all stop)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(role(settings, stop), name=name) for name, role in roles]
    started()
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("%s stopped with an error", task.get_name(), exc_info=result)
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise failed[0]


def wait_for_prefect(api_url: str, auth: str | None, timeout: float, alive: Callable[[], bool]) -> None:
    """Wait until the Prefect API at `api_url` answers; refuse a server that does not take `auth`.

    `alive()` false means whatever was to serve it (a child we started) is gone: stop waiting.
    """
    deadline = time.monotonic() + timeout
    credentials = tuple(auth.split(":", 1)) if auth else None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the Prefect server for {api_url} exited; see its log")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                answer = httpx.get(f"{api_url}/admin/version", auth=credentials, timeout=5)  # type: ignore[arg-type]
                if answer.status_code == 401:
                    given = "the auth string given" if auth else "no auth string"
                    raise RuntimeError(
                        f"the Prefect server at {api_url} refused {given}: set TRADELANE_PREFECT_AUTH "
                        "(or PREFECT_API_AUTH_STRING) to its PREFECT_SERVER_API_AUTH_STRING"
                    )
                answer.raise_for_status()
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(
        f"the Prefect server at {api_url} did not answer within {timeout:.0f}s (PREFECT_API_URL)"
    )
