"""The Prefect server's event persister writing an event's resources cheaply, on SQLite and PostgreSQL.

Each event the server stores is a row in `events` and a row in `event_resources` for its resource
and for each related one: ten or more rows for a file event of a run.

* SQLite: Prefect 3.8.8 stores a batch as one multi-row `INSERT … VALUES (…), (…), …` through the
  ORM: a statement of its own for every batch size, compiled anew each time (≈ 50 bound parameters
  per event). That compilation was the largest part of what each event cost the server (1.3 ms
  of CPU per event). Here the same rows are inserted with `executemany`, through a statement
  compiled once and cached.
* PostgreSQL: Prefect inserts the resource rows through the ORM's bulk insert and the events
  through SQLAlchemy's executemany, each going through every row in Python (its defaults, its
  JSON, its types) before asyncpg sees it: in the separated topology's Prefect server that was
  about a quarter of the server's Python during a burst (py-spy, bench.scaleout --profile). Here
  each table's rows go as one `INSERT … SELECT … FROM unnest(…)` of one array per column (up to
  2,000 events a statement), which asyncpg encodes in C but for the JSON, written by orjson; the
  ids of resource rows and the created/updated times are the columns' own server defaults
  (`gen_random_uuid()`, `CURRENT_TIMESTAMP`), as in Prefect's migrations.

What is stored, and when, is unchanged: events already stored are skipped as before (a message
delivered twice), and so are their resources.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import sqlalchemy as sa
from prefect.server.database import PrefectDBInterface, db_injector
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.events.storage import database
from sqlalchemy.ext.asyncio import AsyncSession


def _once_each(events: list[ReceivedEvent]) -> list[ReceivedEvent]:
    """An event sent twice in one batch (a client resending after a reconnect) is stored once."""
    return list({event.id: event for event in events}.values())


@db_injector
async def write_sqlite_events(
    db: PrefectDBInterface, session: AsyncSession, events: list[ReceivedEvent]
) -> None:
    # Core DML ("raw"): the rows as given, no ORM bulk bookkeeping; a list of them is an executemany.
    event_insert = db.queries.insert(db.Event).execution_options(dml_strategy="raw")
    resource_insert = db.queries.insert(db.EventResource).execution_options(dml_strategy="raw")
    unique = _once_each(events)
    # Prefect's batches keep the `IN (…)` of the duplicate check under SQLite's parameter limit.
    for batch in database._in_safe_batches(unique):
        ids = {event.id for event in batch}
        stored = set((await session.scalars(sa.select(db.Event.id).where(db.Event.id.in_(ids)))).all())
        new = [event for event in batch if event.id not in stored]
        if not new:
            continue
        await session.execute(event_insert, [event.as_database_row() for event in new])
        resource_rows: list[dict[str, Any]] = []
        for event in new:
            resource_rows.extend(event.as_database_resource_rows())
        if resource_rows:
            await session.execute(resource_insert, resource_rows)


# Each insert takes its rows as arrays, one per column and one element per row, which asyncpg
# encodes in C; JSON goes as text, cast by PostgreSQL. An event already stored (a message
# delivered twice) is skipped, and its id not returned, as by Prefect's insert.
_EVENT_COLUMNS = {
    "occurred": "timestamptz",
    "event": "text",
    "resource_id": "text",
    "resource": "jsonb",
    "related_resource_ids": "jsonb",
    "related": "jsonb",
    "payload": "jsonb",
    "received": "timestamptz",
    "recorded": "timestamptz",
    "follows": "uuid",
    "id": "uuid",
}
_RESOURCE_COLUMNS = {
    "occurred": "timestamptz",
    "resource_id": "text",
    "resource_role": "text",
    "resource": "json",  # `json` in Prefect's migration of this table, `jsonb` in `events`
    "event_id": "uuid",
}


def _unnest_insert(table: str, columns: dict[str, str], tail: str = "") -> sa.TextClause:
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns.items())
    return sa.text(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}){tail}")


_INSERT_EVENTS = _unnest_insert("events", _EVENT_COLUMNS, " ON CONFLICT DO NOTHING RETURNING id")
_INSERT_RESOURCES = _unnest_insert("event_resources", _RESOURCE_COLUMNS)


def _json(value: Any) -> str:
    # As Prefect's JSON type stores it: NaN and ±Infinity, which PostgreSQL refuses, become null.
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson cannot write (an integer past 64 bits): the standard library
        return json.dumps(json.loads(json.dumps(value), parse_constant=lambda _: None))


def _arrays(rows: list[dict[str, Any]], columns: dict[str, str]) -> dict[str, list[Any]]:
    return {
        name: [_json(row[name]) if kind.startswith("json") else row[name] for row in rows]
        for name, kind in columns.items()
    }


# Events per statement: a normal flush is ~200; after an outage the persister flushes all it kept.
CHUNK = 2000


async def write_postgres_events(session: AsyncSession, events: list[ReceivedEvent]) -> None:
    unique = _once_each(events)
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        # Prefect's own rows (as_database_row, as_database_resource_rows), as its inserts take them.
        rows = [event.as_database_row() for event in chunk]
        stored = set((await session.scalars(_INSERT_EVENTS, _arrays(rows, _EVENT_COLUMNS))).all())
        new = [event for event in chunk if event.id in stored]
        resource_rows = [row for event in new for row in event.as_database_resource_rows()]
        if resource_rows:
            await session.execute(_INSERT_RESOURCES, _arrays(resource_rows, _RESOURCE_COLUMNS))


def install() -> None:
    database._write_sqlite_events = write_sqlite_events
    database._write_postgres_events = write_postgres_events
