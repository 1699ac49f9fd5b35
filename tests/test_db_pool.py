"""The store's PostgreSQL pool: a connection is pinged only after it sat idle, and a dead one is
then replaced without the caller noticing; lone reads run outside a transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from core import db


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = db.make_engine(postgres_url)
    yield engine
    engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(postgres_url: str, pid: int) -> None:
    other = db.make_engine(postgres_url)
    try:
        with other.connect() as connection:
            # With a timeout, it returns once the backend has ended.
            ended = connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            assert ended.scalar_one()
    finally:
        other.dispose()


def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the dialect's pings (a spy on the dialect's real ping)."""
    called: list[int] = []
    real = engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        called.append(1)
        return bool(real(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    return called


def test_a_connection_back_a_moment_ago_is_not_pinged(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)  # however slow the machine
    called = pings(engine, monkeypatch)
    first = backend_pid(engine)
    for _ in range(5):
        assert backend_pid(engine) == first  # the same pooled connection, reused
    assert called == []


def test_a_connection_idle_long_is_pinged_and_if_dead_replaced(
    engine: Engine,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    called = pings(engine, monkeypatch)
    first = backend_pid(engine)
    terminate(postgres_url, first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every connection now counts as idle long
    second = backend_pid(engine)  # no error: the ping found it dead, the pool connected afresh
    assert second != first and called == [1]
    assert backend_pid(engine) == second and len(called) == 2  # alive: pinged, kept


def test_a_connection_killed_a_moment_ago_fails_once_then_the_pool_is_renewed(
    engine: Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The price of not pinging at every checkout: the server's going away within the idle
    threshold is seen by one statement; the pool is then replaced."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)  # however slow the machine
    first = backend_pid(engine)
    terminate(postgres_url, first)
    with pytest.raises(OperationalError) as failed:
        backend_pid(engine)
    assert failed.value.connection_invalidated
    assert backend_pid(engine) != first


def test_a_lone_read_runs_outside_a_transaction(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """No BEGIN before it (the connection is idle, not in a transaction, after the read), and the
    connection goes back to the pool transactional as before."""
    monkeypatch.setattr(db, "get_engine", lambda: engine)
    with db.autocommit() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
        assert status(connection) == TransactionStatus.IDLE
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        assert status(connection) == TransactionStatus.INTRANS


def status(connection: Connection) -> TransactionStatus:
    dbapi_connection = connection.connection.dbapi_connection
    assert isinstance(dbapi_connection, psycopg.Connection)
    return dbapi_connection.info.transaction_status
