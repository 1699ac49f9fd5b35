"""The whole system for integration tests: `tradelane up` as a child process, and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_worker import CliWorker
from tests.servers import free_port

__all__ = ["System", "postgres_url", "run_postgres", "run_system", "system"]

UP_TIMEOUT = 120.0

# Every `tradelane up` this session started, as (the test that started it, seconds to answer): the
# terminal summary prints them (tests/conftest.py), since each start costs seconds of the suite.
UP_STARTS: list[tuple[str, float]] = []
PREFECT_STALLS: list[tuple[str, str]] = []  # (test, what the Prefect server said)

# Session-wide `up`s, by fixture name, and how to stop each. An idle `up` still costs CPU (its runner
# asks Prefect for work twice a second, its dispatcher sweeps every second), which the rest of the
# suite needs: tests/conftest.py stops each right after the last test that uses it.
IDLE_AFTER_LAST_USE: dict[str, Callable[[], None]] = {}


@dataclass
class System:
    """A running `tradelane up`: its home, its ports, and a way to run the CLI against it."""

    home: Path
    env: dict[str, str]
    api: str
    prefect_api: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # The CLI commands (and `wait_for`'s polls of the history) run in one warm CLI process.
    poller: CliWorker | None = field(default=None, repr=False)
    # Where this start's lines begin in the Prefect server's log (a restarted home appends to it).
    prefect_log_start: int = field(default=0, repr=False)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`tradelane <args>` against this system, run by one warm CLI process (tests/cli_worker.py)."""
        if self.poller is None:
            self.poller = CliWorker(self.env)
        result = self.poller.run(*args)
        if check and result.returncode != 0:
            raise AssertionError(f"tradelane {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def transfers(self, **filters: str) -> list[dict[str, Any]]:
        args = ["transfers", "--json", "--limit", "10000"]
        for key, value in filters.items():
            args += [f"--{key}", value]
        rows: list[dict[str, Any]] = json.loads(self.cli(*args).stdout)
        return rows

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0, **filters: str
    ) -> list[dict[str, Any]]:
        """Poll the transfer history until `predicate(rows)` holds; fail with the last rows otherwise."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.transfers(**filters)
            if predicate(rows):
                return rows
            time.sleep(0.3)
        states: dict[str, int] = {}
        for row in rows:
            states[row["state"]] = states.get(row["state"], 0) + 1
        unfinished = [r for r in rows if r["state"] != "delivered"]
        raise AssertionError(
            f"timed out; {len(rows)} transfers by state {states}; not delivered: "
            f"{json.dumps(unfinished, indent=1)[:3000]}\n{self.log_tails()}"
        )

    def log_tails(self, lines: int = 40) -> str:
        """The last lines `up`, its runner and its Prefect server logged (the server's without its
        access log): why files did not move, in a CI failure."""
        tails = []
        logs = self.home / "logs"
        for path in (self.home / "up.log", logs / "runner.log", logs / "prefect-server.log"):
            if path.exists():
                said = path.read_text(errors="replace").splitlines()
                tail = [line for line in said if '" 20' not in line or "HTTP/1.1" not in line][-lines:]
                tails.append(f"--- last {len(tail)} lines of {path.name}:\n" + "\n".join(tail))
        return "\n".join(tails)

    def log(self, name: str) -> str:
        path = self.home / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def system_env(home: Path, api_port: int, prefect_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRADELANE_"))}
    env.update(
        TRADELANE_HOME=str(home),
        TRADELANE_API_PORT=str(api_port),
        TRADELANE_PREFECT_PORT=str(prefect_port),
        TRADELANE_SFTP_PORT=str(free_port()),
        TRADELANE_FTP_PORT=str(free_port()),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    env.update(extra)
    return env


def note_prefect_stalls(system: System) -> None:
    """Keep what `up`'s Prefect server said of its stalls (deployments/prefect_stalls.py), for the
    run's summary: a stall slows every test on that `up`, and passing tests would hide it."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
    path = system.home / "logs" / "prefect-server.log"
    if not path.exists():
        return
    with path.open("rb") as log:
        log.seek(system.prefect_log_start)
        said = log.read().decode(errors="replace")
    PREFECT_STALLS.extend((test, line) for line in said.splitlines() if "tradelane.stalls" in line)


def start(system: System) -> None:
    began = time.monotonic()
    prefect_log = system.home / "logs" / "prefect-server.log"
    system.prefect_log_start = prefect_log.stat().st_size if prefect_log.exists() else 0
    with (system.home / "up.log").open("ab") as log:  # the child keeps its own copy
        system.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up"], env=system.env, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        if system.proc.poll() is not None:
            raise RuntimeError(f"tradelane up exited:\n{(system.home / 'up.log').read_text()}")
        try:
            # Over HTTPS the certificate is not known until `up` made it: the health check trusts any.
            if httpx.get(f"{system.api}/api/health", timeout=1, verify=False).status_code == 200:
                test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
                UP_STARTS.append((test, time.monotonic() - began))
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"tradelane up did not answer:\n{(system.home / 'up.log').read_text()}")


def stop(system: System, sig: int = signal.SIGINT) -> None:
    if system.poller is not None:
        system.poller.close()
    if system.proc is None or system.proc.poll() is not None:
        return
    note_prefect_stalls(system)
    system.proc.send_signal(sig)
    try:
        system.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        system.proc.kill()
        system.proc.wait()


@contextmanager
def run_system(api_port: int | None = None, **extra_env: str) -> Iterator[System]:
    """Start `tradelane up` in a fresh home (its API on `api_port`, or a free port); its Prefect API
    asks for an auth string.

    Unless `extra_env` gives TRADELANE_PREFECT_AUTH ("": leave `up` to generate one), the harness
    chooses one and puts it in `prefect_api` as user info, so a plain `httpx.get(system.prefect_api
    + ...)` authenticates.
    """
    home = Path(tempfile.mkdtemp(prefix="tradelane-"))
    api_port, prefect_port = api_port or free_port(), free_port()
    extra_env.setdefault("TRADELANE_PREFECT_AUTH", f"tradelane:{os.urandom(16).hex()}")
    env = system_env(home, api_port, prefect_port, **extra_env)
    auth = env.get("TRADELANE_PREFECT_AUTH")
    scheme = "https" if env.get("TRADELANE_API_TLS", "").lower() in ("1", "true", "yes", "on") else "http"
    system = System(
        home=home,
        env=env,
        api=f"{scheme}://127.0.0.1:{api_port}",
        prefect_api=f"http://{auth + '@' if auth else ''}127.0.0.1:{prefect_port}/api",
    )
    try:
        start(system)
        yield system
    finally:
        stop(system)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    """One `tradelane up` for the whole session; tests use their own partner and flow names."""
    with run_system() as running:
        IDLE_AFTER_LAST_USE["system"] = lambda: stop(running)
        yield running


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run `make test-servers`")
    return str(candidates[-1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a loopback port (initdb'd as the postgres user when root)."""
    with run_postgres() as url:
        yield url


@contextmanager
def run_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on a loopback port while the block runs (the `postgres_url`
    fixture's, for a benchmark outside pytest); yields its URL, database `postgres`."""
    data = Path(tempfile.mkdtemp(prefix="tradelane-pg-"))
    port = free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_user,
            _pg_bin("initdb"),
            "-D",
            str(data / "db"),
            "-U",
            "tradelane",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            _pg_bin("pg_ctl"),
            "-D",
            str(data / "db"),
            "-l",
            str(data / "log"),
            "-w",
            "-o",
            f"-p {port} -h 127.0.0.1 -k {data}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://tradelane@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)
