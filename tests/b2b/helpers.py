"""Helpers for B2B connection tests: a throwaway home with two accounts and a file endpoint, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from tests.isolation import isolated_home

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
