"""Every role of tradelane as its own process, each with its own empty home, sharing only what the
roles share: a PostgreSQL store, the storage (a folder, or a bucket), the secrets' key and one
Prefect server (itself `tradelane serve prefect`, on PostgreSQL too).

`serve dispatcher` keeps the deployments registered on the work pool; `run_topology(postgres_url,
workers=[...])` starts one `tradelane worker` per name (one, `worker`, by default), so every run is
taken by one of those."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from core import certificates
from tests.servers import free_port, moto_client
from tests.system import System

START_TIMEOUT = 120.0


@dataclass
class RoleProcess:
    name: str
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    args: list[str] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def log(self) -> str:
        return (self.home / "role.log").read_text(errors="replace")

    def kill(self) -> list[int]:
        """SIGKILL this process and every process under it (a worker's fork server and its flow
        runs), all at once as a machine dying would; returns their pids."""
        pids = process_tree(self.proc.pid)
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        return pids

    def pause(self) -> None:
        """SIGSTOP this process and every process under it: nothing it does (a push under way)
        can finish until `resume()`, however long the test takes to decide what to do."""
        self._signal_tree(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_tree(signal.SIGCONT)

    def _signal_tree(self, signum: int) -> None:
        for pid in process_tree(self.proc.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

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
    # PGAPPNAME: libpq's application name, so PostgreSQL's views and logs say which role a
    # connection is (bench/statements.py counts statements by it).
    env = {**env, "TRADELANE_HOME": str(home), "PGAPPNAME": name}
    with (home / "role.log").open("ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    return RoleProcess(name, home, env, proc, list(args))


def process_tree(root: int) -> list[int]:
    """`root` and its descendants, parents first (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree = [root]
    for pid in tree:
        tree += children.get(pid, [])
    return tree


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

    def add_worker(self, name: str) -> RoleProcess:
        """One more `tradelane worker`, once Prefect lists it polling the pool."""
        worker = self.roles[name] = start_worker(self.root, self.shared, name)
        wait_until_polling(worker, self.prefect_api)
        return worker

    def restart(self, name: str, ready: str | None = None) -> RoleProcess:
        """Start role `name` again as a container would be: its settings, a new empty home; then
        wait for its log to say `ready` (a worker: for Prefect to list it on the pool)."""
        old = self.roles[name]
        old.stop()
        home = old.home.with_name(f"{old.home.name}-again")
        env = {k: v for k, v in old.env.items() if k != "TRADELANE_HOME"}
        if "PREFECT_HOME" in env:
            env["PREFECT_HOME"] = str(home / "prefect")
        again = start_process(name, old.args, env, home)
        self.roles[name] = again
        if ready is None:
            wait_until_polling(again, self.prefect_api)
        else:
            wait_until_up(again, ready)
        return again


# What each role logs once it serves (cli/serve.py).
def role_ready(name: str) -> str:
    return f"tradelane {name} is up"


def wait_until_polling(worker: RoleProcess, prefect_api: str) -> None:
    """Until Prefect lists `worker` on the pool with a heartbeat after it started (it polls for
    runs); fail with its log if it exits first."""
    pool = worker.env.get("TRADELANE_WORK_POOL", "tradelane")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"{worker.name} exited with {worker.proc.returncode}:\n{worker.log()}")
        response = httpx.post(f"{prefect_api}/work_pools/{pool}/workers/filter", json={}, timeout=30)
        if response.status_code == 200:
            for found in response.json():
                beat = found.get("last_heartbeat_time")
                if found["name"] == worker.name and beat and datetime.fromisoformat(beat) > worker.started_at:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"{worker.name} did not start polling:\n{worker.log()}")


def start_worker(root: Path, shared: dict[str, str], name: str) -> RoleProcess:
    """`tradelane worker --name NAME` on its own home (its Prefect client state there too)."""
    env = {**shared, "PREFECT_HOME": str(root / name / "prefect")}
    return start_process(name, ["-m", "cli.main", "worker", "--name", name], env, root / name)


def storage_settings(storage: str, root: Path, moto_url: str | None = None) -> dict[str, str]:
    """The settings that put the storage every role shares on `storage`: "folder" (a local folder
    all the processes see) or "s3" (a new bucket on the moto server at `moto_url`, found by every
    role through the usual AWS_* variables)."""
    if storage == "folder":
        return {"TRADELANE_STORAGE_URL": str(root / "storage")}
    if storage == "s3":
        assert moto_url is not None, "s3 storage needs a moto server"
        bucket = f"storage-{secrets.token_hex(4)}"
        moto_client(moto_url).create_bucket(Bucket=bucket)
        return {
            "TRADELANE_STORAGE_URL": f"s3://{bucket}/tradelane",
            "AWS_ENDPOINT_URL_S3": moto_url,
            "AWS_ACCESS_KEY_ID": "storage-key",
            "AWS_SECRET_ACCESS_KEY": "storage-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    raise ValueError(f"unknown storage {storage!r}")


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


@contextmanager
def run_topology(
    postgres_url: str,
    *,
    workers: Sequence[str] = ("worker",),
    storage: str = "folder",
    moto_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Topology]:
    """The roles, each its own process; `workers`: the names of the `tradelane worker`s to start.
    `env` goes to every role."""
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
        **storage_settings(storage, root, moto_url),
        "TRADELANE_PREFECT_AUTH": auth,
        "TRADELANE_PREFECT_PORT": str(prefect_port),
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        **(env or {}),
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
            # No sweep to speak of unless `env` sets one: an upload the API or the mailboxes take
            # in reaches this dispatcher only by the store's notification (core/wakeups.py).
            ("dispatcher", {"TRADELANE_SWEEP_INTERVAL_SECONDS": "3600", **shared}),
        ]
        ready: dict[str, str] = {}
        for name, role_env in started:
            args = ["-m", "cli.main", "serve", name]
            topology.roles[name] = start_process(name, args, role_env, root / name)
            ready[name] = role_ready(name)
        # The deployments are registered by the dispatcher (`serve dispatcher` keeps them in step
        # with the store); their runs are taken by plain `tradelane worker`s.
        for name in workers:
            topology.roles[name] = start_worker(root, shared, name)
        for name, line in ready.items():
            wait_until_up(topology.roles[name], line)
        for name in workers:
            wait_until_polling(topology.roles[name], topology.prefect_api)
        yield topology
    finally:
        topology.stop()
        if os.environ.get("KEEP_ROLES"):
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
