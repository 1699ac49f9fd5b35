"""Two `tradelane up` instances for cross-instance tests (fixture `peer_pair`, shared by tests/conftest.py).

Each has its own home and ports, `TRADELANE_PUBLIC_URL` = its own API URL (B's is a `Relay` in front
of its API, which passes everything through until a test makes it cut, slow, hold or refuse the
connections towards B), peers on 127.0.0.1 allowed (`TRADELANE_PEER_ALLOW_PRIVATE=true`), a state
check every 2 s, and invitation e-mails through the tests' SMTP server (aiosmtpd, STARTTLS with
AUTH). Session-scoped: both start once for every test module that uses them (each `up` costs
seconds); tests use their own account and connection names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.b2b.peer_pair import Relay
from tests.endpoint_servers.mail import SmtpServer
from tests.servers import free_port
from tests.system import IDLE_AFTER_LAST_USE, System, run_system, stop
from tests.waiting import wait_for

__all__ = ["peer_pair"]

WAIT = 60.0  # the bound for a revoke to show on the other side


@dataclass
class Instance:
    """One of the two: its running system, its file endpoint `lake` (folder `in/`), and the relay its
    public URL points at, if any."""

    name: str
    system: System
    lake: Path
    relay: Relay | None = None

    @property
    def url(self) -> str:
        """Its public URL: where the other instance and the invitation links reach it."""
        return self.relay.url if self.relay is not None else self.system.api

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


def _instance(name: str, smtp: SmtpServer, relayed: bool = False) -> Generator[Instance]:
    port = free_port()
    relay = Relay(port) if relayed else None
    env = {
        "TRADELANE_PUBLIC_URL": relay.url if relay is not None else f"http://127.0.0.1:{port}",
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
            yield Instance(name, system, lake, relay)
    finally:
        if relay is not None:
            relay.close()
        shutil.rmtree(lake, ignore_errors=True)


@pytest.fixture(scope="session")
def peer_pair(smtp_server: SmtpServer) -> Iterator[Pair]:
    """Instances A (inviter) and B (accepter), both running for the whole session (or until the last
    test that uses them: tests/conftest.py). Started side by side: most of a start is waiting."""
    starting = [_instance("a", smtp_server), _instance("b", smtp_server, relayed=True)]
    try:
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(next, starting)

        def stop_both() -> None:
            stop(a.system)
            stop(b.system)

        IDLE_AFTER_LAST_USE["peer_pair"] = stop_both
        yield Pair(a, b)
    finally:
        for instance in reversed(starting):
            instance.close()
