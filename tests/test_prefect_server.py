"""The Prefect server `up` starts begins SQLite write transactions IMMEDIATE (deployments/prefect_server)."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

from prefect.server.database.configurations import AioSqliteConfiguration
from sqlalchemy import text

from deployments import prefect_server


def test_write_transactions_take_the_write_lock_when_they_begin(tmp_path: Path) -> None:
    """A read-then-write transaction holds the write lock from its start: another writer between its
    read and its write is kept out (it would wait on its busy timeout) instead of slipping in, which
    under DEFERRED makes the transaction's own write fail at once with SQLITE_BUSY_SNAPSHOT."""
    db = tmp_path / "prefect.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (n INTEGER)")
    prefect_server.install()
    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db}", timeout=10)

    def other_writes() -> bool:
        """One try without waiting (busy timeout 0): refused at once while the write lock is held."""
        with closing(sqlite3.connect(db, timeout=0)) as conn:
            try:
                with conn:
                    conn.execute("INSERT INTO t VALUES (1)")
            except sqlite3.OperationalError as exc:
                assert "locked" in str(exc), exc
                return False
        return True

    async def read_then_write() -> None:
        engine = await config.engine()
        session = await config.session(engine)
        async with session, config.begin_transaction(session):
            await session.execute(text("SELECT count(*) FROM t"))
            assert not other_writes(), "the other writer got in: the transaction was not IMMEDIATE"
            await session.execute(text("INSERT INTO t VALUES (2)"))
        await engine.dispose()

    asyncio.run(read_then_write())
    assert other_writes(), "the write lock outlived the transaction"
    with closing(sqlite3.connect(db)) as conn:
        assert sorted(n for (n,) in conn.execute("SELECT n FROM t")) == [1, 2]
