"""`tradelane up`: the Prefect server, the deployments' runner (a worker), the API and the dispatcher.

Each role is defined once in cli/roles.py (`tradelane serve <role>` runs one alone). The Prefect
server (unless PREFECT_API_URL names the user's own) and the runner are child processes; the API
(uvicorn), the mailbox servers and the dispatcher share this process, so an upload wakes the
dispatcher without a round trip. Children are
tied to this process with PR_SET_PDEATHSIG, so even a SIGKILL of `up` takes them down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import ipaddress
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cli import prefect_names, roles
from cli.roles import (  # noqa: F401 (GIL_SWITCH_INTERVAL, tune_interpreter: also known by this module)
    GIL_SWITCH_INTERVAL,
    prefect_server_command,
    run_roles,
    tune_interpreter,
    wait_for_prefect,
)
from core.config import Settings, get_settings
from core.crypto import home_secret
from deployments.heartbeat import HEARTBEAT_SECONDS, HEARTBEAT_VARIABLE

log = logging.getLogger("tradelane.up")

PR_SET_PDEATHSIG = 1

PREFECT_AUTH_FILE = "prefect-auth"
# Prefect's own names for the auth string, in the order a user's environment is asked for one.
PREFECT_AUTH_VARIABLES = ("PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING")
# Prefect's two names for its server's database (the second is the older alias).
PREFECT_DATABASE_VARIABLES = prefect_names.setting_names("PREFECT_SERVER_DATABASE_CONNECTION_URL")

# What tradelane runs best with; a value the user gives for any of them is kept as given.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    # Polling data flows run on schedules; look for new schedules every few seconds, not minutes.
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    # A 2-second poll would otherwise get 100 runs scheduled ahead; 20 is plenty with a 5 s loop.
    "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "20",
    # Embedded SQLite serialises writers: under a burst, wait for the lock instead of answering 500.
    "PREFECT_SERVER_DATABASE_TIMEOUT": "30",
    # A larger pool when the server's database is PostgreSQL; Prefect 3.8.8 passes no pool setting
    # for SQLite, which keeps SQLAlchemy's default (5 + 10 overflow).
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "10",
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "20",
    "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
    # Flow runs say they are alive this often (Prefect's minimum): a run that stops is marked
    # Crashed and its files requeued (deployments/dead_runs.py).
    HEARTBEAT_VARIABLE: str(HEARTBEAT_SECONDS),
    # The server stores events in batches of this many (or every 5 s, whichever comes first): a
    # batch of 200 costs SQLite about a third less per event than Prefect's 20, and a burst sends
    # two or three file events per file. Alerts do not wait for it (automations read events as they come).
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
}


class PrefectSettingError(RuntimeError):
    """A PREFECT_* setting the user gave that tradelane cannot honour; the message names it."""


def external_prefect_api() -> str | None:
    """The user's PREFECT_API_URL: a Prefect server someone else runs, which tradelane then uses
    instead of starting its own (`up`), or which a role on its own must be told."""
    return os.environ.get("PREFECT_API_URL", "").strip() or None


def prefect_auth(settings: Settings) -> tuple[str, str]:
    """The Prefect API's auth string and where an operator finds it (to log in to the UI).

    TRADELANE_PREFECT_AUTH, else the user's own Prefect setting, else a string generated once into
    the home: the API that creates flow runs and shows their logs is never open, even on loopback.
    """
    if given := given_prefect_auth(settings):
        return given
    path = settings.home_dir / PREFECT_AUTH_FILE
    # user:password, what the UI's login form (and `curl -u`) expect; ASCII, which the UI can encode.
    generated = home_secret(PREFECT_AUTH_FILE, lambda: f"tradelane:{secrets.token_urlsafe(32)}".encode())
    return generated.decode(), str(path)


def given_prefect_auth(settings: Settings) -> tuple[str, str] | None:
    """The auth string the user gave (and the setting it came from), refusing two that disagree."""
    given = [("TRADELANE_PREFECT_AUTH", settings.prefect_auth)]
    given += [(variable, os.environ.get(variable)) for variable in PREFECT_AUTH_VARIABLES]
    found = [(variable, value) for variable, value in given if value]
    for variable, value in found[1:]:
        if value != found[0][1]:
            raise PrefectSettingError(
                f"{found[0][0]} and {variable} give two different Prefect auth strings; "
                "one server and its clients need one: set only one of them"
            )
    return (found[0][1], found[0][0]) if found else None


def _prefect_database_url(settings: Settings) -> tuple[str, str] | None:
    """The database the user gave the Prefect server `up` starts, and the setting naming it."""
    found = [(v, os.environ[v]) for v in PREFECT_DATABASE_VARIABLES if os.environ.get(v)]
    if len({value for _variable, value in found}) > 1:
        raise PrefectSettingError(
            f"{found[0][0]} and {found[1][0]} name two different databases for the Prefect server: set one"
        )
    return (found[0][1], found[0][0]) if found else None


def prefect_environment(settings: Settings, own_server: bool | None = None) -> dict[str, str]:
    """Prefect settings for every process of this installation, the user's own kept as given.

    Our server (or the user's PREFECT_API_URL), our auth string (or the user's), no phoning home.
    A PREFECT_* value the user set is never replaced: it is passed on, or, where it contradicts the
    server `up` starts (its address, its port), refused with a message naming it. `own_server`: the
    settings of the server this installation starts (default: unless PREFECT_API_URL names one).
    """
    external = external_prefect_api()
    if own_server is None:
        own_server = external is None
    # The user's value, under whichever of the setting's names it was given; else ours.
    env = dict(prefect_names.given(k) or (k, v) for k, v in PREFECT_DEFAULTS.items())
    env["PREFECT_HOME"] = os.environ.get("PREFECT_HOME") or str(settings.home_dir / "prefect")
    api_url = external or settings.prefect_api_url
    env["PREFECT_API_URL"] = api_url
    # Where the UI in a browser finds the API: this machine, unless the user says otherwise.
    env["PREFECT_UI_API_URL"] = os.environ.get("PREFECT_UI_API_URL") or api_url
    if not own_server:
        # Someone else's server: its auth string is whatever the user gave (none: an open server).
        if given := given_prefect_auth(settings):
            env["PREFECT_API_AUTH_STRING"] = given[0]
        return env
    for variable, value, setting in (
        ("PREFECT_SERVER_API_HOST", settings.prefect_host, "TRADELANE_PREFECT_HOST"),
        ("PREFECT_SERVER_API_PORT", str(settings.prefect_port), "TRADELANE_PREFECT_PORT"),
    ):
        if (mine := os.environ.get(variable)) and mine != value:
            raise PrefectSettingError(
                f"{variable}={mine} differs from {setting}={value}, where tradelane starts its Prefect "
                f"server: set {setting} instead (or PREFECT_API_URL to use a server you run yourself)"
            )
        env[variable] = value
    auth, _where = prefect_auth(settings)
    # The server demands it (HTTP Basic); every client — runner, flow runs, dispatcher, CLI — sends it.
    env["PREFECT_SERVER_API_AUTH_STRING"] = env["PREFECT_API_AUTH_STRING"] = auth
    database = _prefect_database_url(settings)
    if database is None:
        sqlite = f"sqlite+aiosqlite:///{Path(env['PREFECT_HOME']) / 'prefect.db'}"
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = sqlite
    else:
        env[database[1]] = database[0]
    return env


def apply_prefect_environment(settings: Settings, own_server: bool | None = None) -> None:
    env = prefect_environment(settings, own_server)
    os.environ.update(env)
    # Children (runner, flow runs) must find the same store whatever their working directory.
    os.environ["TRADELANE_HOME"] = str(settings.home_dir)
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


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


RUNNER = "runner"
# A runner that dies this many times within the window is broken, not killed: `up` stops, saying so.
RUNNER_RESTARTS = 5
RUNNER_RESTART_WINDOW_SECONDS = 60.0


class RestartBudget:
    """At most `limit` restarts within any `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.times: list[float] = []

    def allow(self, now: float) -> bool:
        self.times = [t for t in self.times if now - t < self.window]
        if len(self.times) >= self.limit:
            return False
        self.times.append(now)
        return True


class Supervisor:
    """`tradelane up`: every role of cli/roles.py on this machine, the Prefect server and the
    deployments' runner as children (no Prefect server when PREFECT_API_URL names one)."""

    def __init__(self, settings: Settings | None = None, echo: Callable[[str], None] = print) -> None:
        self.settings = settings or get_settings()
        self.echo = echo
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.prefect_login = ""
        # The user's own Prefect server (PREFECT_API_URL), used instead of starting one.
        self.external_prefect = external_prefect_api()

    def start_children(self) -> None:
        s = self.settings
        ports = [("API", s.host, s.api_port), ("SFTP", s.host, s.sftp_port), ("FTP", s.host, s.ftp_port)]
        if not self.external_prefect:
            ports.append(("Prefect server", s.prefect_host, s.prefect_port))
        for what, host, port in ports:
            if not port_free(host, port):
                raise RuntimeError(f"{what} port {host}:{port} is already in use (is another `up` running?)")
        log_dir = s.home_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        api_url, auth = os.environ["PREFECT_API_URL"], os.environ.get("PREFECT_API_AUTH_STRING")
        if self.external_prefect:
            wait_for_prefect(api_url, auth, 90, alive=lambda: True)
        else:
            # The server shuts down cleanly on SIGTERM (its database stays consistent).
            server = spawn(prefect_server_command(s), "prefect-server", str(log_dir), signal.SIGTERM)
            self.children.append(("prefect server", server))
            wait_for_prefect(api_url, auth, 90, alive=lambda: server.poll() is None)
        self.children.append((RUNNER, self.start_runner()))

    def start_runner(self) -> subprocess.Popen[bytes]:
        """The child that runs the data flows' deployments (deployments/serve.py); started again
        by `_watch_children` if it dies."""
        # If `up` dies, the runner's graceful shutdown would wait on a Prefect server that is dying
        # too; flow runs in flight are recovered by the dispatcher on the next start anyway.
        runner_cmd = [sys.executable, "-m", "deployments.serve"]
        log_dir = str(self.settings.home_dir / "logs")
        return spawn(runner_cmd, RUNNER, log_dir, on_parent_death=signal.SIGKILL)

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
        s = self.settings
        if warning := clear_text_warning(s):
            log.warning(warning)
        prefect = (
            f"Prefect API {self.external_prefect} (yours)"
            if self.external_prefect
            else f"Prefect UI {s.prefect_ui_url} (log in with {self.prefect_login})"
        )
        banner = (
            f"tradelane is up: API {s.api_scheme}://{s.host}:{s.api_port}{api_tls_note(s)}  (docs /docs)   "
            f"SFTP {s.host}:{s.sftp_port}   FTP/FTPS {s.host}:{s.ftp_port}   "
            f"{prefect}   home {s.home_dir}   Ctrl-C stops"
        )
        # The mailbox servers start (and bind) before the API serves, as they always have; the
        # dispatcher in this process is woken by every upload the API and mailboxes take in.
        await run_roles(
            s,
            [
                ("mailboxes", roles.mailboxes),
                ("api", roles.api),
                # Its runs are carried by this process's runner child: they die with it.
                # Its runner child keeps the deployments registered (deployments/serve.py).
                (
                    "dispatcher",
                    functools.partial(roles.dispatcher, runs_die_with_it=True, keeps_deployments=False),
                ),
                ("children", lambda _settings, stop: self._watch_children(stop)),
            ],
            started=lambda: self.echo(banner),
        )

    async def _watch_children(self, stop: asyncio.Event) -> None:
        """The Prefect server's exit stops `up` (nothing runs without it). The runner's is a worker
        dying: it is started again, its flow runs are marked Crashed once their heartbeats stop and
        their files requeued by the dispatcher; a runner that keeps dying at start stops `up`."""
        restarts = RestartBudget(RUNNER_RESTARTS, RUNNER_RESTART_WINDOW_SECONDS)
        while not stop.is_set():
            for index, (name, proc) in enumerate(self.children):
                if proc.poll() is None:
                    continue
                if name == RUNNER and restarts.allow(time.monotonic()):
                    log.error("the runner exited with code %s; starting it again", proc.returncode)
                    self.children[index] = (name, self.start_runner())
                    continue
                log.error("%s exited with code %s; stopping", name, proc.returncode)
                stop.set()
                return
            await asyncio.sleep(1)

    def run(self) -> None:
        from core.db import init_db

        # Where the operator finds the UI's login, asked before our own choice joins the environment.
        if not self.external_prefect:
            self.prefect_login = prefect_auth(self.settings)[1]
        apply_prefect_environment(self.settings)
        # After the environment: Prefect reads its settings once, when it is first imported.
        roles.check_dead_run_bound(self.settings)
        from core import storage

        storage.check(self.settings)  # a storage bucket that does not exist refuses the start, by name
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
