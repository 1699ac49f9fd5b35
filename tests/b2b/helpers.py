"""Helpers for B2B connection tests: a throwaway home with two accounts and a file endpoint, the CLI,
and the REST API served by uvicorn on 127.0.0.1 (fixtures `b2b` and `api`, shared by tests/conftest.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from typer.testing import CliRunner

from api.app import create_app
from cli.main import app
from core.db import session_scope
from tests.isolation import isolated_home

__all__ = ["api", "b2b"]  # the fixtures tests/conftest.py shares

runner = CliRunner()
PASSWORD = "Tr4de-lane-Pass"


def run(*args: str, ok: bool = True) -> str:
    """`tradelane ARGS` in-process; its output (stdout and stderr)."""
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1, (result.exit_code, result.output)
    return result.output


def run_json(*args: str) -> Any:
    return json.loads(run(*args, "--json"))


ADMIN_PASSWORD = "connect-Owner-Pass-41"


def add_account(name: str) -> None:
    """An account with its admin user, as `tradelane account add` makes it."""
    from core import accounts

    with session_scope() as session:
        accounts.add(session, name, email=f"admin@{name}.example", password=ADMIN_PASSWORD)


def dump() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a connection operation may change: to prove a refusal changed nothing."""
    from core.db import get_engine

    tables = ["connection", "dataflow", "receipt", "transfer", "account"]
    with get_engine().connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))] for t in tables}


@dataclass
class Homes:
    home: Path
    lake: Path  # the receiver's (home's) file endpoint `lake`, with folder in/acme


@pytest.fixture
def b2b(tmp_path: Path) -> Iterator[Homes]:
    """A home where `home` receives into file endpoint `lake` and `acme` is a second account."""
    with isolated_home(tmp_path / "home") as home:
        lake = tmp_path / "lake"
        (lake / "in" / "acme").mkdir(parents=True)
        run("endpoint", "add", "lake", "--type", "file", "--path", str(lake))
        add_account("acme")
        yield Homes(home, lake)


# -- REST: who calls is an account user, logged in at POST /api/authentication --------------
# Filled by the `api` fixture with each account's admin's bearer token.

ACME: dict[str, str] = {}
HOME: dict[str, str] = {}
OTHER: dict[str, str] = {}  # an admin of a third account, globex


def _log_in(client: httpx.Client, email: str) -> dict[str, str]:
    answer = client.post(
        "/api/authentication", data={"grant_type": "password", "username": email, "password": ADMIN_PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _users() -> None:
    """The admins who call: acme's (made with the account), home's and a third account's."""
    from core import accounts
    from core.tenancy import scope_for_cli

    add_account("globex")
    with session_scope() as session:
        accounts.add_user(
            session,
            scope_for_cli(session, "home"),
            "admin@home.example",
            password=ADMIN_PASSWORD,
            role="admin",
        )


@pytest.fixture
def api(b2b: Homes) -> Iterator[httpx.Client]:
    _users()
    app = create_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", http="h11", loop="asyncio")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for headers, email in (
                (ACME, "admin@acme.example"),
                (HOME, "admin@home.example"),
                (OTHER, "admin@globex.example"),
            ):
                headers.clear()
                headers.update(_log_in(client, email))
            yield client
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
