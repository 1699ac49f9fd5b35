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
from fastapi import Header
from sqlalchemy import text
from typer.testing import CliRunner

from api.app import create_app
from api.deps import TokenDep
from api.routes.connections import get_caller
from cli.main import app
from core.b2b.caller import Caller, cli_caller
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


def add_account(name: str) -> None:
    """An account (a stand-in for `tradelane account add` until accounts land)."""
    from core.b2b.new_accounts import create_account
    from core.db import session_scope

    with session_scope() as session:
        create_account(session, name)


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


# -- REST: who calls is the account named in X-Test-Account (account users cannot log in yet) --

ACME = {"X-Test-Account": "acme"}
HOME = {"X-Test-Account": "home"}


def caller_for_test(token: TokenDep, x_test_account: str | None = Header(default=None)) -> Caller:
    if x_test_account is None:
        return get_caller(token)
    with session_scope() as session:
        return cli_caller(session, x_test_account)


@pytest.fixture
def api(b2b: Homes) -> Iterator[httpx.Client]:
    app = create_app()
    app.dependency_overrides[get_caller] = caller_for_test
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
            yield client
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
