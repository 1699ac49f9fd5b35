"""Two `tradelane up` instances for cross-instance tests (fixture `peer_pair`, shared by tests/conftest.py).

Each has its own home and ports, `TRADELANE_PUBLIC_URL` = its own API URL, peers on 127.0.0.1
allowed (`TRADELANE_PEER_ALLOW_PRIVATE=true`), a state check every 2 s, and invitation e-mails
through the tests' SMTP server (aiosmtpd, STARTTLS with AUTH). Session-scoped: both
start once for every test module that uses them; tests use their own connection names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.endpoint_servers.mail import SmtpServer
from tests.servers import free_port
from tests.system import System, run_system
from tests.waiting import wait_for

__all__ = ["peer_pair"]

WAIT = 60.0  # the bound for a revoke to show on the other side


@dataclass
class Instance:
    """One of the two: its running system and its file endpoint `lake` (folder `in/`)."""

    name: str
    system: System
    lake: Path

    @property
    def url(self) -> str:
        return self.system.api

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.system.cli(*args, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.system.cli(*args, "--json").stdout)

    def connections(self, account: str = "home") -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.json("connect", "list", "--account", account)
        return rows

    def settled(self, account: str = "home") -> list[dict[str, Any]]:
        """`connections()` without what the state checks change as they run (when a peer was checked)."""
        rows = self.connections(account)
        for row in rows:
            if row.get("peer"):
                row["peer"] = {k: v for k, v in row["peer"].items() if k in ("url", "account")}
        return rows

    def connection(self, name: str, account: str = "home") -> dict[str, Any]:
        found = [c for c in self.connections(account) if c["name"] == name]
        assert len(found) == 1, (name, self.connections(account))
        return found[0]

    def wait_state(
        self, name: str, state: str, account: str = "home", timeout: float = WAIT
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            row = self.connection(name, account)
            return row if row["state"] == state else None

        return wait_for(reached, f"{self.name}: connection {name!r} {state}", timeout=timeout, interval=0.5)

    def py(self, code: str) -> str:
        """Python against this instance's home (to read what no command shows, e.g. a key)."""
        done = subprocess.run(
            [sys.executable, "-c", code], env=self.system.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@dataclass
class Pair:
    a: Instance
    b: Instance

    def invite(
        self, *, send: bool, name: str, outbox: str | None = None, expires: str = "7d"
    ) -> dict[str, Any]:
        """An invitation of A's `home`: A sends (into B) with `send`, else A receives into `lake:in`."""
        args = ["connect", "invite", "--email", "bob@globex.example", "--name", name, "--expires", expires]
        args += ["--send", "--outbox", outbox or name] if send else ["--receive", "--dest", "lake:in"]
        invited: dict[str, Any] = self.a.json(*args)
        return invited

    def stores(self) -> tuple[Any, Any]:
        """Both sides' connections as `connect list --json` shows them (to prove nothing changed)."""
        return self.a.settled(), self.b.settled()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _instance(name: str, smtp: SmtpServer) -> Iterator[Instance]:
    port = free_port()
    env = {
        "TRADELANE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TRADELANE_PEER_ALLOW_PRIVATE": "true",
        "TRADELANE_PEER_CHECK_SECONDS": "2",
        "TRADELANE_SMTP_HOST": smtp.host,
        "TRADELANE_SMTP_PORT": str(smtp.starttls_port),
        "TRADELANE_SMTP_TLS": "starttls",
        "TRADELANE_SMTP_USER": smtp.user,
        "TRADELANE_SMTP_PASSWORD": smtp.password,
        "TRADELANE_SMTP_CAFILE": str(smtp.cafile),
    }
    lake = Path(tempfile.mkdtemp(prefix=f"tradelane-{name}-lake-"))
    try:
        with run_system(api_port=port, **env) as system:
            (lake / "in").mkdir()
            system.cli("endpoint", "add", "lake", "--type", "file", "--path", str(lake))
            yield Instance(name, system, lake)
    finally:
        shutil.rmtree(lake, ignore_errors=True)


@pytest.fixture(scope="session")
def peer_pair(smtp_server: SmtpServer) -> Iterator[Pair]:
    """Instances A (inviter) and B (accepter), both running for the whole session."""
    a_instances = _instance("a", smtp_server)
    a = next(a_instances)
    try:
        b_instances = _instance("b", smtp_server)
        b = next(b_instances)
        try:
            yield Pair(a, b)
        finally:
            b_instances.close()
    finally:
        a_instances.close()
