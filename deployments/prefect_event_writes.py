"""The Prefect server's event persister writing an event's resources cheaply, on SQLite and PostgreSQL.

Each event the server stores is a row in `events` and a row in `event_resources` for its resource
and for each related one: ten or more rows for a file event of a run.

* SQLite: Prefect 3.8.8 stores a batch as one multi-row `INSERT … VALUES (…), (…), …` through the
  ORM: a statement of its own for every batch size, compiled anew each time (≈ 50 bound parameters
  per event), and every value of every row through its column type's Python (a time zone
  conversion, a JSON dump, load and dump again). Here each row is turned once into the text SQLite
  keeps (the same text: a test compares the two writers' rows) and the rows go to the driver's
  own `executemany`.
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
from datetime import datetime
from typing import Any
from uuid import uuid4

import orjson
import prefect.types._datetime
import sqlalchemy as sa
from prefect.server.database import PrefectDBInterface, db_injector
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.events.storage import database
from sqlalchemy.ext.asyncio import AsyncSession

# Prefect's own SQLite writer, kept for the test that compares what each stores.
prefect_write_sqlite_events = database._write_sqlite_events


def _once_each(events: list[ReceivedEvent]) -> list[ReceivedEvent]:
    """An event sent twice in one batch (a client resending after a reconnect) is stored once."""
    return list({event.id: event for event in events}.values())


_SQLITE_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # sqlalchemy.dialects.sqlite.DATETIME's


def _sqlite_time(value: datetime | None) -> str | None:
    """As Prefect's `Timestamp` stores it on SQLite: in UTC, in SQLAlchemy's SQLite DATETIME format."""
    if value is None:
        return None
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("Timestamps must have a timezone.")  # Prefect's own refusal
    utc = (
        datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond
        )
        - offset
    )
    return _SQLITE_DATETIME % (
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
    )


def _sqlite_json(value: Any) -> str | None:
    """As Prefect's `JSON` type stores it on SQLite: the standard library's text, NaN and
    ±Infinity (which SQLite's JSON functions cannot read) written as null, None as NULL."""
    if value is None:
        return None
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return _json_nan_as_null(value)


def _json_nan_as_null(value: Any) -> str:
    """The standard library's JSON of `value`, NaN and ±Infinity made null as Prefect's JSON type
    makes them (it dumps, loads with `parse_constant`, and dumps again)."""
    return json.dumps(json.loads(json.dumps(value), parse_constant=lambda _: None))


def _sqlite_insert(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + c for c in columns)})"


_SQLITE_EVENT_COLUMNS = (
    "occurred", "event", "resource_id", "resource", "related_resource_ids", "related", "payload",
    "received", "recorded", "follows", "id", "created", "updated",
)  # fmt: skip
_SQLITE_RESOURCE_COLUMNS = (
    "occurred", "resource_id", "resource_role", "resource", "event_id", "id", "created", "updated",
)  # fmt: skip
_SQLITE_INSERT_EVENT = _sqlite_insert("events", _SQLITE_EVENT_COLUMNS)
_SQLITE_INSERT_RESOURCE = _sqlite_insert("event_resources", _SQLITE_RESOURCE_COLUMNS)


def _sqlite_event_row(event: ReceivedEvent, now: str) -> dict[str, Any]:
    row = event.as_database_row()  # Prefect's own row, stored as its column types would store it
    return {
        "occurred": _sqlite_time(row["occurred"]),
        "event": row["event"],
        "resource_id": row["resource_id"],
        "resource": _sqlite_json(row["resource"]),
        "related_resource_ids": _sqlite_json(row["related_resource_ids"]),
        "related": _sqlite_json(row["related"]),
        "payload": _sqlite_json(row["payload"]),
        "received": _sqlite_time(row["received"]),
        "recorded": _sqlite_time(row["recorded"]),
        "follows": None if row["follows"] is None else str(row["follows"]),
        "id": str(row["id"]),
        "created": now,
        "updated": now,
    }


def _sqlite_resource_rows(event: ReceivedEvent, now: str) -> list[dict[str, Any]]:
    # One event's rows share its time and id: each converted once.
    occurred, event_id = _sqlite_time(event.occurred), str(event.id)
    return [
        {
            "occurred": occurred,
            "resource_id": row["resource_id"],
            "resource_role": row["resource_role"],
            # `event_resources.resource` is SQLAlchemy's plain JSON: labels, always strings.
            "resource": json.dumps(row["resource"]),
            "event_id": event_id,
            "id": str(uuid4()),  # the column defaults Prefect's ORM would have filled in
            "created": now,
            "updated": now,
        }
        for row in event.as_database_resource_rows()
    ]


@db_injector
async def write_sqlite_events(
    db: PrefectDBInterface, session: AsyncSession, events: list[ReceivedEvent]
) -> None:
    connection = await session.connection()
    unique = _once_each(events)
    # Prefect's batches keep the `IN (…)` of the duplicate check under SQLite's parameter limit.
    for batch in database._in_safe_batches(unique):
        ids = {event.id for event in batch}
        stored = set((await session.scalars(sa.select(db.Event.id).where(db.Event.id.in_(ids)))).all())
        new = [event for event in batch if event.id not in stored]
        if not new:
            continue
        now = _sqlite_time(prefect.types._datetime.now("UTC"))
        assert now is not None
        # The driver's own executemany: the rows are already in the form SQLite keeps.
        await connection.exec_driver_sql(_SQLITE_INSERT_EVENT, [_sqlite_event_row(e, now) for e in new])
        resource_rows = [row for event in new for row in _sqlite_resource_rows(event, now)]
        if resource_rows:
            await connection.exec_driver_sql(_SQLITE_INSERT_RESOURCE, resource_rows)


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
        return _json_nan_as_null(value)


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
