"""deployments/prefect_stalls: the Prefect server names where it was when it was stuck for seconds."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from deployments import prefect_server, prefect_stalls
from tests.servers import free_port
from tests.test_prefect_server import prefect_sqlite_with_a_table


class Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def said() -> Iterator[Said]:
    handler = Said()
    prefect_stalls.log.addHandler(handler)
    try:
        yield handler
    finally:
        prefect_stalls.log.removeHandler(handler)


def _a_call_that_blocks_the_loop(seconds: float) -> None:
    time.sleep(seconds)


def test_a_blocked_event_loop_is_named_once_and_its_end_said(said: Said) -> None:
    async def main() -> None:
        watchdog = prefect_stalls.LoopWatchdog(asyncio.get_running_loop(), threshold=0.4)
        watchdog.start()
        await asyncio.sleep(0.6)  # turning: nothing to say
        assert said.lines == []
        _a_call_that_blocks_the_loop(1.5)
        await asyncio.sleep(0.3)  # the loop turns again
        watchdog.stop()

    asyncio.run(main())
    assert len(said.lines) == 2, said.lines
    stuck, again = said.lines
    assert "has not turned for" in stuck
    # Where: the call that blocked, innermost first, and what called it.
    assert stuck.split("it is in ")[1].startswith("sleep") or "_a_call_that_blocks_the_loop" in stuck
    assert "_a_call_that_blocks_the_loop (tests/test_prefect_stalls.py:" in stuck and "main" in stuck
    seconds = float(again.split("after ")[1].split(" s")[0])
    assert 1.3 <= seconds < 10, again


def test_a_stopped_loop_is_not_called_stuck(said: Said) -> None:
    loop = asyncio.new_event_loop()
    try:
        watchdog = prefect_stalls.LoopWatchdog(loop, threshold=0.2)
        watchdog.start()
        loop.run_until_complete(asyncio.sleep(0.1))
        time.sleep(0.8)  # not running: nobody waits on it
        assert said.lines == []
        watchdog.stop()
    finally:
        loop.close()


async def _holds_the_lock(session_of, seconds: float, holding: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    async with session_of() as (session, config), config.begin_transaction(session):
        await session.execute(text("INSERT INTO t VALUES (1)"))
        holding.set()
        await asyncio.sleep(seconds)


async def _waits_for_the_lock(session_of) -> None:  # type: ignore[no-untyped-def]
    async with session_of() as (session, config), config.begin_transaction(session):
        await session.execute(text("INSERT INTO t VALUES (2)"))


def test_a_slow_write_transaction_is_named_with_when_and_where_it_began(
    tmp_path: Path, said: Said, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction holds SQLite's write lock, another waits for it: both are said, each with
    the function that began it; a quick one is not."""
    monkeypatch.setattr(prefect_stalls, "STALL_SECONDS", 1.0)
    db, config = prefect_sqlite_with_a_table(tmp_path)

    async def main() -> None:
        engine = await config.engine()

        @asynccontextmanager
        async def session_of():  # type: ignore[no-untyped-def]
            session = await config.session(engine)
            async with session:
                yield session, config

        await _waits_for_the_lock(session_of)  # alone: quick, not said
        holding = asyncio.Event()
        holder = asyncio.create_task(_holds_the_lock(session_of, 2.0, holding))
        await holding.wait()  # however loaded the machine, the holder has the lock first
        await _waits_for_the_lock(session_of)
        await holder
        await engine.dispose()

    asyncio.run(main())

    def begun_in(function: str) -> list[str]:
        mark = f"it was begun in {function} (tests/test_prefect_stalls.py:"
        return [line for line in said.lines if line.startswith("a write transaction") and mark in line]

    held_lines, waited_lines = begun_in("_holds_the_lock"), begun_in("_waits_for_the_lock")
    assert len(held_lines) == 1 and len(waited_lines) == 1, said.lines  # the quick one alone: not said
    held, waited = held_lines[0], waited_lines[0]
    took = [float(line.split(" took ")[1].split(" s")[0]) for line in (held, waited)]
    assert took[0] >= 1.9 and took[1] >= 1.5, took  # 2 s held; as long waited, less the start
    begun = [line.split("begun at ")[1].split(" ")[0] for line in (held, waited)]
    # The one that held it began first (said to the millisecond: on a quick machine, the same one).
    assert begun[0] <= begun[1], begun
    with closing(sqlite3.connect(db)) as conn:
        assert sorted(n for (n,) in conn.execute("SELECT n FROM t")) == [1, 2, 2]


def _a_handler_that_blocks_the_loop(seconds: float) -> None:
    time.sleep(seconds)


def test_the_prefect_servers_uvicorn_watches_its_loop(said: Said, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `up`'s Prefect server runs it (deployments/prefect_server installed): a request whose
    handler blocks the loop is named, in the server's own process."""
    monkeypatch.setattr(prefect_stalls, "STALL_SECONDS", 0.4)
    prefect_server.install()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        _a_handler_that_blocks_the_loop(1.2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "done"
        time.sleep(0.5)  # the loop's next beat says it turns again
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    named = "_a_handler_that_blocks_the_loop (tests/test_prefect_stalls.py:"
    assert any(named in line for line in said.lines), said.lines
    assert any("turns again after" in line for line in said.lines), said.lines
