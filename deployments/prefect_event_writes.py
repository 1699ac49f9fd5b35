"""The Prefect server's event persister writing an event's resources cheaply, on SQLite and PostgreSQL.

Each event the server stores is a row in `events` and a row in `event_resources` for its resource
and for each related one: ten or more rows for a file event of a run.

* SQLite: Prefect 3.8.8 stores a batch as one multi-row `INSERT … VALUES (…), (…), …` through the
  ORM: a statement of its own for every batch size, compiled anew each time (≈ 50 bound parameters
  per event). That compilation was the largest part of what each event cost the server (1.3 ms
  of CPU per event). Here the same rows are inserted with `executemany`, through a statement
  compiled once and cached.
* PostgreSQL: Prefect inserts the resource rows through the ORM's bulk insert, which goes through
  each row in Python (its defaults, its JSON, its types) before asyncpg sees it: in the separated
  topology's Prefect server that insert was about a quarter of the server's Python during a burst
  (py-spy, bench.scaleout --profile). Here they go as one `INSERT … SELECT … FROM unnest(…)` of
  five arrays, which asyncpg encodes in C; the id and the created/updated times are the columns'
  own server defaults (`gen_random_uuid()`, `CURRENT_TIMESTAMP`), as in Prefect's migrations.

What is stored, and when, is unchanged: events already stored are skipped as before (a message
delivered twice), and so are their resources.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from prefect.server.database import PrefectDBInterface, db_injector
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.events.storage import database
from sqlalchemy.ext.asyncio import AsyncSession


@db_injector
async def write_sqlite_events(
    db: PrefectDBInterface, session: AsyncSession, events: list[ReceivedEvent]
) -> None:
    # Core DML ("raw"): the rows as given, no ORM bulk bookkeeping; a list of them is an executemany.
    event_insert = db.queries.insert(db.Event).execution_options(dml_strategy="raw")
    resource_insert = db.queries.insert(db.EventResource).execution_options(dml_strategy="raw")
    # Prefect's batches keep the `IN (…)` of the duplicate check under SQLite's parameter limit.
    for batch in database._in_safe_batches(events):
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


# The resource rows as five arrays, one element per row; the JSON as text, cast by PostgreSQL.
_UNNEST_RESOURCES = sa.text(
    "INSERT INTO event_resources (occurred, resource_id, resource_role, resource, event_id) "
    "SELECT * FROM unnest(CAST(:occurred AS timestamptz[]), CAST(:resource_id AS text[]), "
    "CAST(:resource_role AS text[]), CAST(:resource AS json[]), CAST(:event_id AS uuid[]))"
)


def _resource_columns(events: list[ReceivedEvent]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        name: [] for name in ("occurred", "resource_id", "resource_role", "resource", "event_id")
    }
    for event in events:
        for row in event.as_database_resource_rows():  # Prefect's own rows, as its insert takes them
            columns["occurred"].append(row["occurred"])
            columns["resource_id"].append(row["resource_id"])
            columns["resource_role"].append(row["resource_role"])
            columns["resource"].append(orjson.dumps(row["resource"]).decode())
            columns["event_id"].append(row["event_id"])
    return columns


@db_injector
async def write_postgres_events(
    db: PrefectDBInterface, session: AsyncSession, events: list[ReceivedEvent]
) -> None:
    # Prefect's own insert of the events (ON CONFLICT DO NOTHING, the ids it stored returned).
    event_insert = (
        db.queries.insert(db.Event).on_conflict_do_nothing().returning(db.Event.id)
    ).execution_options(dml_strategy="raw")
    for batch in database._in_safe_batches(events):
        stored = set(
            (await session.scalars(event_insert, [event.as_database_row() for event in batch])).all()
        )
        new = [event for event in batch if event.id in stored]  # a duplicate's resources are stored
        if new:
            await session.execute(_UNNEST_RESOURCES, _resource_columns(new))


def install() -> None:
    database._write_sqlite_events = write_sqlite_events
    database._write_postgres_events = write_postgres_events
