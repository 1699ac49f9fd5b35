"""The Prefect server `up` starts begins SQLite write transactions IMMEDIATE (deployments/prefect_server)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from prefect.server.database.configurations import AioSqliteConfiguration
from sqlalchemy import text

from deployments import prefect_server


def test_write_transactions_wait_for_the_lock_instead_of_failing(tmp_path: Path) -> None:
    """A read-then-write transaction racing another writer: DEFERRED fails at once, IMMEDIATE waits."""
    db = tmp_path / "prefect.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (n INTEGER)")
    prefect_server.install()
    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db}", timeout=10)
    other_wrote = threading.Event()

    def other_writer() -> None:
        with sqlite3.connect(db, timeout=10) as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        other_wrote.set()

    async def read_then_write() -> int:
        engine = await config.engine()
        session = await config.session(engine)
        async with session, config.begin_transaction(session):
            await session.execute(text("SELECT count(*) FROM t"))
            # Another connection writes between our read and our write: under IMMEDIATE it has to
            # wait for us, so our write cannot hit SQLITE_BUSY_SNAPSHOT.
            writer = threading.Thread(target=other_writer)
            writer.start()
            await asyncio.sleep(0.3)
            assert not other_wrote.is_set(), "the other writer got in: the transaction was not IMMEDIATE"
            await session.execute(text("INSERT INTO t VALUES (2)"))
        writer.join(timeout=10)
        await engine.dispose()
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    assert asyncio.run(read_then_write()) == 2
