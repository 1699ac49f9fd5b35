"""`tradelane up`: the Prefect server, the deployments' runner (a worker), the API and the dispatcher.

The Prefect server and the runner are child processes; the API (uvicorn) and the dispatcher share
this process's event loop, so an upload wakes the dispatcher without a round trip. Children are
tied to this process with PR_SET_PDEATHSIG, so even a SIGKILL of `up` takes them down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from core.config import Settings, get_settings
from core.crypto import home_secret

log = logging.getLogger("tradelane.up")

PR_SET_PDEATHSIG = 1

# Each SFTP connection is two threads handing data to each other (paramiko's transport thread
# decrypts, the session thread writes and hashes). With CPython's default 5 ms GIL switch interval
# the one that just released the GIL for I/O often waits out a whole interval to get it back; at
# 0.5 ms uploads and downloads run 1.3-1.8x faster (bench/sftp_bench.py).
GIL_SWITCH_INTERVAL = 0.0005


def tune_interpreter() -> None:
    """Interpreter-wide settings the mailbox servers of `up` run best with. Set by the process that
    runs them, never by a server's `start()`: a test or a library that starts one keeps its own."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)


PREFECT_AUTH_FILE = "prefect-auth"
# Prefect's own names for the auth string, in the order a user's environment is asked for one.
PREFECT_AUTH_VARIABLES = ("PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING")


def prefect_auth(settings: Settings) -> tuple[str, str]:
    """The Prefect API's auth string and where an operator finds it (to log in to the UI).

    TRADELANE_PREFECT_AUTH, else the user's own Prefect setting, else a string generated once into
    the home: the API that creates flow runs and shows their logs is never open, even on loopback.
    """
    if settings.prefect_auth:
        return settings.prefect_auth, "TRADELANE_PREFECT_AUTH"
    for variable in PREFECT_AUTH_VARIABLES:
        if value := os.environ.get(variable):
            return value, variable
    path = settings.home_dir / PREFECT_AUTH_FILE
    # user:password, what the UI's login form (and `curl -u`) expect; ASCII, which the UI can encode.
    generated = home_secret(PREFECT_AUTH_FILE, lambda: f"tradelane:{secrets.token_urlsafe(32)}".encode())
    return generated.decode(), str(path)


def prefect_environment(settings: Settings) -> dict[str, str]:
    """Prefect settings for every process of this installation: our server, no phoning home."""
    prefect_home = settings.home_dir / "prefect"
    auth, _where = prefect_auth(settings)
    return {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": settings.prefect_api_url,
        # Where the UI in a browser finds the API: this machine, unless the user says otherwise.
        "PREFECT_UI_API_URL": os.environ.get("PREFECT_UI_API_URL") or settings.prefect_api_url,
        "PREFECT_SERVER_API_HOST": settings.prefect_host,
        # The server demands it (HTTP Basic); every client — runner, flow runs, dispatcher, CLI — sends it.
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        "PREFECT_API_AUTH_STRING": auth,
        "PREFECT_SERVER_API_PORT": str(settings.prefect_port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        # Polling data flows run on schedules; look for new schedules every few seconds, not minutes.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        # A 2-second poll would otherwise get 100 runs scheduled ahead; 20 is plenty with a 5 s loop.
        "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "20",
        # Embedded SQLite serialises writers: under a burst, wait for the lock instead of answering 500.
        "PREFECT_SERVER_DATABASE_TIMEOUT": "30",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "10",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "20",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    }


def apply_prefect_environment(settings: Settings) -> None:
    os.environ.update(prefect_environment(settings))
    # Children (runner, flow runs) must find the same store whatever their working directory.
    os.environ["TRADELANE_HOME"] = str(settings.home_dir)
    (settings.home_dir / "prefect").mkdir(parents=True, exist_ok=True)


def _die_with_parent(sig: int) -> Callable[[], None]:
    def arrange() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig)

    return arrange


def spawn(args: list[str], name: str, log_dir: str, on_parent_death: int) -> subprocess.Popen[bytes]:
    # The child writes to its own copy of the descriptor: ours is closed once it has started.
    with open(os.path.join(log_dir, f"{name}.log"), "ab") as logfile:
        return subprocess.Popen(
            args,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(on_parent_death),
            env=os.environ.copy(),
        )


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; see its log")
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start within {timeout:.0f}s")


def prefect_healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.prefect_api_url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def port_free(host: str, port: int) -> bool:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # TRADELANE_*HOST may be "::"
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def api_tls_note(settings: Settings) -> str:
    """What `up` says after the API's https URL: which certificate to trust, and its fingerprint."""
    if not settings.api_tls:
        return ""
    from core import tls

    cert, _ = tls.server_certificate(settings)
    kind = "yours" if settings.tls_cert_file is not None else "self-signed"
    return f" ({kind}, SHA-256 {tls.fingerprint(cert)}; trust {cert})"


def clear_text_warning(settings: Settings) -> str | None:
    """A warning when passwords would cross the network in clear to the API port."""
    if settings.api_tls or settings.forwarded_allow_ips:
        return None
    host = settings.host.strip("[]")
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        if host == "localhost":
            return None
    return (
        f"the API, its logins and the web pages send passwords in clear on {settings.host}:"
        f"{settings.api_port}: set TRADELANE_API_TLS=true or put a TLS proxy in front (README 'HTTPS')"
    )


def start_runner(log_dir: str) -> subprocess.Popen[bytes]:
    """`up`'s runner child (deployments/serve.py): the data flows' deployments kept on the work
    pool, and one worker taking their runs (more workers: `tradelane worker`). Its log: runner.log."""
    # If `up` dies, the worker's graceful shutdown would wait on a Prefect server that is dying
    # too; flow runs in flight are recovered by the dispatcher on the next start anyway.
    command = [sys.executable, "-m", "deployments.serve"]
    return spawn(command, "runner", log_dir, on_parent_death=signal.SIGKILL)


class Supervisor:
    def __init__(self, settings: Settings | None = None, echo: Callable[[str], None] = print) -> None:
        self.settings = settings or get_settings()
        self.echo = echo
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.prefect_login = ""

    def start_children(self) -> None:
        s = self.settings
        ports = (
            ("API", s.host, s.api_port),
            ("SFTP", s.host, s.sftp_port),
            ("FTP", s.host, s.ftp_port),
            ("Prefect server", s.prefect_host, s.prefect_port),
        )
        for what, host, port in ports:
            if not port_free(host, port):
                raise RuntimeError(f"{what} port {host}:{port} is already in use (is another `up` running?)")
        log_dir = s.home_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        server = spawn(
            [
                sys.executable,
                "-m",
                "deployments.prefect_server",  # prefect's own CLI, with SQLite writes begun IMMEDIATE
                "server",
                "start",
                "--host",
                s.prefect_host,
                "--port",
                str(s.prefect_port),
            ],
            "prefect-server",
            str(log_dir),
            # The server shuts down cleanly on SIGTERM (its database stays consistent).
            on_parent_death=signal.SIGTERM,
        )
        self.children.append(("prefect server", server))
        wait_until(lambda: prefect_healthy(s), 90, "Prefect server", server)
        self.children.append(("runner", start_runner(str(log_dir))))

    def stop_children(self) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for _name, proc in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    async def serve(self) -> None:
        import uvicorn

        from api.app import create_app
        from api.server import uvicorn_config
        from api.web.accept_service import CoreAcceptService
        from deployments.dispatcher import Dispatcher

        s = self.settings
        if warning := clear_text_warning(s):
            log.warning(warning)
        mailbox_servers = self.start_mailbox_servers()
        # httptools with header size/time limits, connection caps (api/server.py)
        # with the invitation accept page (/connect/accept), decided by the connections core
        server = uvicorn.Server(uvicorn_config(create_app(accept_service=CoreAcceptService()), s))
        dispatcher = Dispatcher(s)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # uvicorn takes SIGINT/SIGTERM itself while it serves and raises them again once the API
        # has stopped, so they reach `stop` then, and the rest shuts down after it.
        tasks = [
            asyncio.create_task(server.serve(), name="api"),
            asyncio.create_task(dispatcher.run(), name="dispatcher"),
            asyncio.create_task(self._watch_children(stop), name="children"),
        ]
        self.echo(
            f"tradelane is up: API {s.api_scheme}://{s.host}:{s.api_port}{api_tls_note(s)}  (docs /docs)   "
            f"SFTP {s.host}:{s.sftp_port}   FTP/FTPS {s.host}:{s.ftp_port}   "
            f"Prefect UI {s.prefect_ui_url} (log in with {self.prefect_login})   "
            f"home {s.home_dir}   Ctrl-C stops"
        )
        try:
            await stop.wait()
        finally:
            server.should_exit = True
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for mailbox_server in mailbox_servers:
                mailbox_server.stop()

    def start_mailbox_servers(self) -> list[Any]:
        """SFTP and FTP/FTPS in threads of this process, sharing one login ledger with the API."""
        from mailboxes.auth import MailboxAuth
        from mailboxes.ftp import FTPServer
        from mailboxes.sftp import SFTPServer

        tune_interpreter()
        auth = MailboxAuth(self.settings)
        started: list[Any] = []
        for server_class in (SFTPServer, FTPServer):
            server = server_class(self.settings, auth)
            server.start()
            started.append(server)
        return started

    async def _watch_children(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name, proc in self.children:
                if proc.poll() is not None:
                    log.error("%s exited with code %s; stopping", name, proc.returncode)
                    stop.set()
                    return
            await asyncio.sleep(1)

    def run(self) -> None:
        from core.db import init_db

        # Where the operator finds the UI's login, asked before our own choice joins the environment.
        self.prefect_login = prefect_auth(self.settings)[1]
        apply_prefect_environment(self.settings)
        init_db()
        # The certificate FTPS (and HTTPS with API_TLS) presents: an unusable one refuses the start
        # here, before any child is spawned (core/tls.py's TLSConfigError is a RuntimeError).
        from core import tls

        tls.server_certificate(self.settings)
        try:
            self.start_children()
            import uvloop

            uvloop.install()  # libuv's event loop: the API's sockets cost less CPU per byte
            asyncio.run(self.serve())
        finally:
            self.stop_children()
            self.echo("tradelane stopped")
