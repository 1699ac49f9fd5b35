"""Every role of tradelane as its own process, each with its own empty home, sharing only what the
roles share: a PostgreSQL store, a storage folder, the secrets' key and one Prefect server (itself
`tradelane serve prefect`, on PostgreSQL too)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from core import certificates
from tests.servers import free_port
from tests.system import System

START_TIMEOUT = 120.0


@dataclass
class RoleProcess:
    name: str
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return (self.home / "role.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_process(name: str, args: list[str], env: dict[str, str], home: Path) -> RoleProcess:
    home.mkdir(parents=True, exist_ok=True)
    env = {**env, "TRADELANE_HOME": str(home)}
    with (home / "role.log").open("ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    return RoleProcess(name, home, env, proc)


def wait_until_up(role: RoleProcess, ready: str) -> None:
    """Until the role's log says `ready`; fail with the log if it exits first."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if role.proc.poll() is not None:
            raise RuntimeError(f"{role.name} exited with {role.proc.returncode}:\n{role.log()}")
        if ready in role.log():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{role.name} did not start:\n{role.log()}")


def create_database(server_url: str, name: str) -> str:
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def base_env() -> dict[str, str]:
    """This environment without anything of tradelane or Prefect: each process gets only its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRADELANE_"))}


@dataclass
class Topology:
    root: Path
    shared: dict[str, str]
    prefect_api: str  # with the auth string as user info
    system: System  # the API's address and the CLI, run with the shared settings
    roles: dict[str, RoleProcess] = field(default_factory=dict)

    def stop(self) -> None:
        if self.system.poller is not None:
            self.system.poller.close()
        for role in reversed(list(self.roles.values())):
            role.stop()


def start_prefect(root: Path, shared: dict[str, str], postgres_url: str) -> RoleProcess:
    # The user's own database for the Prefect server: honoured, not replaced by SQLite.
    prefect_db = create_database(postgres_url, f"prefect_{secrets.token_hex(4)}")
    env = {
        **shared,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_db.replace("+psycopg", "+asyncpg"),
    }
    role = start_process("prefect", ["-m", "cli.main", "serve", "prefect"], env, root / "prefect")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if role.proc.poll() is not None:
            raise RuntimeError(f"serve prefect exited:\n{role.log()}")
        try:
            if httpx.get(f"{shared['PREFECT_API_URL']}/health", timeout=1).status_code == 200:
                return role
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"serve prefect did not answer:\n{role.log()}")


def start_worker(root: Path, shared: dict[str, str], name: str) -> RoleProcess:
    """A `tradelane worker` on the work pool, with its own home (and Prefect client state)."""
    env = {**shared, "PREFECT_HOME": str(root / name / "prefect")}
    return start_process(name, ["-m", "cli.main", "worker", "--name", name], env, root / name)


@contextmanager
def run_topology(postgres_url: str) -> Iterator[Topology]:
    root = Path(tempfile.mkdtemp(prefix="tradelane-roles-"))
    auth = f"tradelane:{secrets.token_hex(16)}"
    prefect_port = free_port()
    key, cert = certificates.self_signed_server("127.0.0.1")
    (root / "tls").mkdir()
    certificates.write_private(root / "tls" / "key.pem", key.encode())
    (root / "tls" / "cert.pem").write_text(cert)
    shared = {
        **base_env(),
        "TRADELANE_DATABASE_URL": create_database(postgres_url, f"store_{secrets.token_hex(4)}"),
        "TRADELANE_SECRET_KEY": Fernet.generate_key().decode(),
        "TRADELANE_STORAGE_URL": str(root / "storage"),
        "TRADELANE_PREFECT_AUTH": auth,
        "TRADELANE_PREFECT_PORT": str(prefect_port),
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
    }
    api_port = free_port()
    cli_env = {**shared, "TRADELANE_HOME": str(root / "cli"), "TRADELANE_API_PORT": str(api_port)}
    topology = Topology(
        root=root,
        shared=shared,
        prefect_api=f"http://{auth}@127.0.0.1:{prefect_port}/api",
        system=System(
            home=root / "cli",
            env=cli_env,
            api=f"http://127.0.0.1:{api_port}",
            prefect_api=f"http://{auth}@127.0.0.1:{prefect_port}/api",
        ),
    )
    try:
        topology.roles["prefect"] = start_prefect(root, shared, postgres_url)
        mailbox_env = {
            **shared,
            "TRADELANE_SFTP_PORT": str(free_port()),
            "TRADELANE_FTP_PORT": str(free_port()),
            "TRADELANE_TLS_CERT_FILE": str(root / "tls" / "cert.pem"),
            "TRADELANE_TLS_KEY_FILE": str(root / "tls" / "key.pem"),
            "TRADELANE_SFTP_HOST_KEY_DIR": str(root / "hostkeys"),
        }
        started = [
            ("api", {**shared, "TRADELANE_API_PORT": str(api_port)}),
            ("mailboxes", mailbox_env),
            # No sweep to speak of: an upload the API or the mailboxes take in reaches this
            # dispatcher only by the store's notification (core/wakeups.py).
            ("dispatcher", {**shared, "TRADELANE_SWEEP_INTERVAL_SECONDS": "3600"}),
        ]
        for name, env in started:
            args = ["-m", "cli.main", "serve", name]
            topology.roles[name] = start_process(name, args, env, root / name)
        # The deployments are registered by the dispatcher (`serve dispatcher` keeps them in step
        # with the store); their runs are taken by a plain `tradelane worker`.
        topology.roles["worker"] = start_worker(root, shared, "worker")
        for name, _env in started:
            wait_until_up(topology.roles[name], f"tradelane {name} is up")
        yield topology
    finally:
        topology.stop()
        if os.environ.get("KEEP_ROLES"):
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
