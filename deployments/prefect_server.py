"""`prefect server start`, with
* every SQLite write transaction begun IMMEDIATE, in turn (below);
* events stored on SQLite as rows already in the form SQLite keeps, through the driver's
  executemany, and on PostgreSQL as arrays (deployments/prefect_event_writes.py);
* its event consumers parsing only the events they may use (deployments/prefect_event_consumers.py);
* an event it receives validated once, not twice (deployments/prefect_event_receive.py);
* each subscriber of its in-memory topics given a plain copy of a message, not a deep one
  (deployments/prefect_message_copies.py);
* its settings read without an exception each time (deployments/prefect_settings_lookup.py);
* a warning naming where it was when its event loop or a write transaction was stuck for seconds
  (deployments/prefect_stalls.py).

Prefect 3.8.8 begins its write transactions DEFERRED on SQLite: a transaction that read first and
then writes, while another connection wrote in between, fails at once with SQLITE_BUSY (no busy
wait is possible). The server answers 503 and Prefect's client retries after 2, 4, 8… seconds, so
under a burst creating a flow run took up to 15 s. Begun IMMEDIATE, a writer waits for the one
before it instead. Reads outside transactions stay lock-free (WAL), and so do the sessions Prefect
opens inside a write transaction without a transaction of their own, and the tasks it spawns there
(they begin as Prefect begins them: were they IMMEDIATE, they would wait for the lock their own
caller holds).

The server's writers wait for each other in a queue of this process (`_writer_turn`), not on
SQLite's busy timeout: SQLite's busy handler polls, sleeping 1, 2, 5, 10, 15, 20, 25… ms between
tries, so a writer that found the lock taken slept on for up to tens of milliseconds after it was
free. A run's API calls are writes (its creation, its states, a worker's poll): over 25 files sent
one after another to an idle `up`, 250 of 557 write transactions waited more than 5 ms to begin,
9.1 s in all. Queued here, each writer begins the moment the one before it ends, in the order they
came (bench.latency_breakdown's p50 about a tenth shorter).

    python -m deployments.prefect_server server start --host 127.0.0.1 --port 4200
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from prefect.server.database.configurations import SQLITE_BEGIN_MODE, AioSqliteConfiguration

from deployments import prefect_stalls

_begin_transaction = AioSqliteConfiguration.begin_transaction
_uvicorn_startup = uvicorn.Server.startup

# How long a writer waits for its turn in the queue before it asks SQLite for the lock anyway (and
# waits on SQLite's busy timeout, as without the queue): a writer that held its turn this long is
# stuck, and the ones behind it are no worse off than before the queue.
WRITER_TURN_SECONDS = 5.0
_writer_turns: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}  # one queue per event loop


@asynccontextmanager
async def _writer_turn() -> AsyncIterator[None]:
    """Wait for the writers before this one in this process to end their transactions, in order."""
    turn = _writer_turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    try:
        async with asyncio.timeout(WRITER_TURN_SECONDS):
            await turn.acquire()
    except TimeoutError:
        prefect_stalls.log.warning(
            "a Prefect write transaction waited %.0f s for the one before it; asking SQLite directly",
            WRITER_TURN_SECONDS,
        )
        yield
        return
    try:
        yield
    finally:
        turn.release()


@asynccontextmanager
async def _begin_immediate(
    self: AioSqliteConfiguration, session: Any, with_for_update: bool = False
) -> AsyncGenerator[Any, None]:
    # with_for_update=True is Prefect's own switch to BEGIN IMMEDIATE.
    began = time.monotonic()
    try:
        async with _writer_turn(), _begin_transaction(self, session, with_for_update=True) as transaction:
            await session.connection()  # BEGIN IMMEDIATE now, while the mode says so
            # Prefect's mode is a context variable: left set, every session opened inside (a work
            # queue's status event reads one) and every task spawned from here, up to and during
            # the commit (the automations' cache refresh), would begin IMMEDIATE too, and wait
            # SQLite's busy timeout (60 s) for the lock held right here. Prefect's own reset, as
            # the transaction ends, restores what the mode was before it.
            SQLITE_BEGIN_MODE.set(None)
            yield transaction
    finally:
        prefect_stalls.report_slow_transaction(time.monotonic() - began)


async def _startup_watched(self: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
    prefect_stalls.LoopWatchdog(asyncio.get_running_loop()).start()
    await _uvicorn_startup(self, sockets)


def install() -> None:
    from deployments import (
        prefect_event_consumers,
        prefect_event_receive,
        prefect_event_writes,
        prefect_message_copies,
        prefect_settings_lookup,
    )

    AioSqliteConfiguration.begin_transaction = _begin_immediate  # type: ignore[method-assign]
    uvicorn.Server.startup = _startup_watched  # type: ignore[method-assign]
    prefect_event_consumers.install()
    prefect_event_receive.install()
    prefect_event_writes.install()
    prefect_message_copies.install()
    prefect_settings_lookup.install()


if __name__ == "__main__":
    from prefect.cli import app

    install()
    app()
