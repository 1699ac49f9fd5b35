"""The connection life cycle on a real PostgreSQL (partial unique indexes, the account lock, single use)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from core.b2b import outbox
from core.b2b.caller import cli_caller
from core.db import session_scope
from tests.b2b.carry import carry_pending
from tests.b2b.helpers import add_account, dump, run, run_json
from tests.isolation import isolated_home


@pytest.fixture
def pg_home(tmp_path: Path, postgres_url: str) -> Iterator[Path]:
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    with isolated_home(tmp_path / "home", database_url=postgres_url):
        lake = tmp_path / "lake"
        (lake / "in").mkdir(parents=True)
        run("endpoint", "add", "lake", "--type", "file", "--path", str(lake))
        add_account("acme")
        yield lake


def test_life_cycle_on_postgres(pg_home: Path) -> None:
    invited = run_json(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        "orders",
        "--email",
        "b@home.example",
        "--name",
        "to-home",
    )
    with session_scope() as session:
        caller = cli_caller(session, "acme")
    held = outbox.write(caller, "to-home", "early.json", io.BytesIO(b"1"), require_active=False)
    assert held.held
    run("connect", "accept", invited["link"], "--account", "home", "--name", "from-acme", "--dest", "lake:in")
    assert carry_pending() == ["delivered"]
    assert (pg_home / "in" / "early.json").read_bytes() == b"1"
    before = dump()
    taken = run(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        "orders",
        "--email",
        "b@h.example",
        "--name",
        "other",
        ok=False,
    )
    assert "409: account 'acme' already has an outbox named 'orders'" in taken
    assert "409: this invitation was already accepted" in run(
        "connect", "accept", invited["link"], "--account", "home", "--name", "x", "--dest", "lake", ok=False
    )
    assert dump() == before
    run("connect", "revoke", "from-acme", "--account", "home")
    # A revoked connection's outbox name stays taken; a declined one's is free again.
    again = run(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        "orders",
        "--email",
        "b@h.example",
        "--name",
        "again",
        ok=False,
    )
    assert "409: account 'acme' already has an outbox named 'orders'" in again
    declined = run_json(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        "spare",
        "--email",
        "b@h.example",
        "--name",
        "spare",
    )
    run("connect", "decline", declined["link"])
    run(
        "connect",
        "invite",
        "--account",
        "acme",
        "--send",
        "--outbox",
        "spare",
        "--email",
        "b@h.example",
        "--name",
        "spare",
    )
