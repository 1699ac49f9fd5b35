"""The Prefect server's cost of storing events on PostgreSQL: Prefect's own inserts against the
arrays of deployments/prefect_event_writes.py, alternating, on a PostgreSQL of its own.

    python -m bench.pg_event_writes [--events N] [--rounds R]

Each round stores N fresh events (default 2,000) of ten resources each (a run's file event names
about eleven), in batches of 200 as the server's persister flushes them, once through each writer,
and prints this process's CPU and the wall time per event. PostgreSQL's own CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from tests.roles.topology import create_database
from tests.system import run_postgres

BATCH = 200


def file_event(n: int) -> Any:
    from prefect.server.events.schemas.events import Event

    return Event(
        event="tradelane.file.delivered",
        resource={  # type: ignore[arg-type]
            "prefect.resource.id": f"tradelane.file.{n}",
            "prefect.resource.name": f"invoice-{n}.xml",
            "tradelane.transfer.id": str(n),
        },
        related=[  # type: ignore[list-item]
            {
                "prefect.resource.id": f"tradelane.x.{i}",
                "prefect.resource.role": f"r{i}",
                "prefect.resource.name": f"n{i}",
            }
            for i in range(9)
        ],
        payload={"size": n, "destination": "file:///out", "sha256": "ab" * 32},
        occurred=datetime.now(UTC),  # type: ignore[arg-type]
        id=uuid4(),
    ).receive()


async def measure(events: int, rounds: int) -> None:
    from prefect.server.database import provide_database_interface
    from prefect.server.events.storage import database

    from deployments import prefect_event_writes

    writers: dict[str, Callable[[Any, list[Any]], Awaitable[None]]] = {
        "Prefect's inserts": database._write_postgres_events,
        "arrays (unnest)": prefect_event_writes.write_postgres_events,
    }
    db = provide_database_interface()
    await db.create_db()
    for round_ in range(1, rounds + 1):
        for name, writer in writers.items():
            database._write_postgres_events = writer  # type: ignore[assignment]
            batch = [file_event(n) for n in range(events)]
            cpu, wall = time.process_time(), time.perf_counter()
            for start in range(0, events, BATCH):
                async with db.session_context(begin_transaction=True) as session:
                    await database.write_events(session=session, events=batch[start : start + BATCH])
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            per_event = f"{1000 * cpu / events:.2f} ms CPU/event  {1000 * wall / events:.2f} ms wall"
            print(f"round {round_}  {name:18}  {per_event}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    with run_postgres() as server:
        url = create_database(server, f"events_{uuid4().hex[:8]}")
        url = url.replace("+psycopg", "+asyncpg").replace("postgresql://", "postgresql+asyncpg://", 1)
        with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: url}):
            asyncio.run(measure(args.events, args.rounds))


if __name__ == "__main__":
    main()
