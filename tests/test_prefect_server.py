"""The Prefect server `up` starts (deployments/prefect_server): SQLite write transactions begun IMMEDIATE,
one after another in the process, events stored through deployments/prefect_event_writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.server.database.configurations import SQLITE_BEGIN_MODE, AioSqliteConfiguration
from sqlalchemy import event, text

from deployments import prefect_server
from tests.roles.topology import create_database


def prefect_sqlite_with_a_table(tmp_path: Path) -> tuple[Path, AioSqliteConfiguration]:
    """A SQLite file (WAL) with one table `t (n INTEGER)`, and Prefect's configuration of it as
    `up`'s Prefect server has it (deployments/prefect_server installed)."""
    db = tmp_path / "prefect.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (n INTEGER)")
    prefect_server.install()
    return db, AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db}", timeout=10)


def test_write_transactions_take_the_write_lock_when_they_begin(tmp_path: Path) -> None:
    """A read-then-write transaction holds the write lock from its start: another writer between its
    read and its write is kept out (it would wait on its busy timeout) instead of slipping in, which
    under DEFERRED makes the transaction's own write fail at once with SQLITE_BUSY_SNAPSHOT."""
    db, config = prefect_sqlite_with_a_table(tmp_path)

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


def without_busy_wait(engine: Any) -> None:
    """SQLite refuses a taken lock at once on the engine's connections (Prefect sets a 60-s busy
    timeout as each connects; this runs after it)."""

    def no_busy_timeout(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 0")
        cursor.close()

    event.listen(engine.sync_engine, "connect", no_busy_timeout)


def test_writers_of_one_process_take_turns_instead_of_polling_sqlites_lock(tmp_path: Path) -> None:
    """Write transactions begun together in the server's process wait for one another in order,
    each beginning as the one before it ends: with no busy timeout at all (SQLite refuses a taken
    lock at once), ten writers that each hold the lock across a pause all commit, one after the
    other, in the order they came. Without the queue the second would be refused at once; with
    Prefect's busy timeout it would poll SQLite's lock, sleeping on for milliseconds after it was
    free."""
    db, config = prefect_sqlite_with_a_table(tmp_path)
    began: list[int] = []

    async def main() -> None:
        engine = await config.engine()
        without_busy_wait(engine)

        async def write(n: int) -> None:
            session = await config.session(engine)
            async with session, config.begin_transaction(session):
                began.append(n)
                await session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
                await asyncio.sleep(0.01)  # the others ask meanwhile

        await asyncio.gather(*(write(n) for n in range(10)))
        await engine.dispose()

    asyncio.run(main())
    assert began == list(range(10)), "writers did not begin in the order they asked"
    with closing(sqlite3.connect(db)) as conn:
        assert sorted(n for (n,) in conn.execute("SELECT n FROM t")) == list(range(10))


def test_a_writer_stuck_in_its_turn_lets_the_next_ask_sqlite_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that holds its turn past WRITER_TURN_SECONDS does not hold up the queue for ever: the
    next one asks SQLite for the lock as before the queue (its busy timeout), and commits once the
    stuck one has; both writes are kept, and the queue still works afterwards."""
    db, config = prefect_sqlite_with_a_table(tmp_path)
    monkeypatch.setattr(prefect_server, "WRITER_TURN_SECONDS", 0.1)
    engine_of: dict[str, Any] = {}

    async def write(n: int, hold: float = 0.0) -> list[int]:
        """Insert n; the rows committed before this transaction began."""
        session = await config.session(engine_of["e"])
        async with session, config.begin_transaction(session):
            seen = [m for (m,) in await session.execute(text("SELECT n FROM t"))]
            await session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
            await asyncio.sleep(hold)
        return seen

    async def main() -> None:
        engine_of["e"] = await config.engine()
        stuck = asyncio.create_task(write(1, hold=0.5))
        await asyncio.sleep(0.05)
        # Past its turn's wait, on SQLite's busy timeout: it begins once the stuck one committed.
        assert await asyncio.wait_for(write(2), timeout=5) == [1]
        await stuck
        assert sorted(await asyncio.wait_for(asyncio.gather(write(3), write(4)), timeout=5)) == [
            [1, 2],
            [1, 2, 3],
        ]
        await engine_of["e"].dispose()

    asyncio.run(main())
    with closing(sqlite3.connect(db)) as conn:
        assert sorted(n for (n,) in conn.execute("SELECT n FROM t")) == [1, 2, 3, 4]


def forget_prefect_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect keeps the database it was first given for the whole process: forget it for one test."""
    from prefect.server.database.dependencies import MODELS_DEPENDENCIES

    for key in ("database_config", "query_components", "orm", "interface_class"):
        monkeypatch.setitem(MODELS_DEPENDENCIES, key, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def events_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database for the Prefect server: SQLite (`up`'s) or PostgreSQL (the roles')."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    server = request.getfixturevalue("postgres_url")
    url = create_database(server, f"prefect_events_{uuid4().hex[:8]}")
    return url.replace("+psycopg", "+asyncpg").replace("postgresql://", "postgresql+asyncpg://", 1)


def test_events_are_stored_with_their_resources_once_each(
    events_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stores events through deployments/prefect_event_writes (SQLite: an executemany,
    not Prefect's multi-row INSERT compiled per batch; PostgreSQL: the resources as one INSERT of
    arrays, not the ORM's bulk insert): every event with a row per resource it names, read back as
    sent and found by Prefect's own queries of related resources; one delivered twice is stored
    once, its resources too, whether it came in an earlier batch or twice in the same one."""
    from prefect.server.database import provide_database_interface
    from prefect.server.events.filters import EventFilter, EventRelatedFilter, EventResourceFilter
    from prefect.server.events.schemas.events import Event
    from prefect.server.events.storage import database
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    from deployments import prefect_event_writes

    forget_prefect_database(monkeypatch)
    monkeypatch.setattr(prefect_event_writes, "CHUNK", 7)  # several statements per batch
    prefect_server.install()
    assert database._write_sqlite_events is prefect_event_writes.write_sqlite_events
    assert database._write_postgres_events is prefect_event_writes.write_postgres_events

    def event(n: int) -> Any:
        partner = 3 if n % 2 else 4
        return Event(
            event="tradelane.file.delivered",
            resource={"prefect.resource.id": f"tradelane.file.{n}", "prefect.resource.name": f"f{n}.txt"},
            related=[
                {
                    "prefect.resource.id": f"tradelane.partner.{partner}",
                    "prefect.resource.role": "partner",
                    "prefect.resource.name": f'acme "{partner}" ünïcode',
                },
                {"prefect.resource.id": "tradelane.data-flow.1", "prefect.resource.role": "data-flow"},
            ],
            payload={
                "size": n,
                "destination": "file:///out",
                "ratio": float("nan") if n == 5 else n / 2,
                "big": 2**80 + n,  # past 64 bits, which orjson cannot write
            },
            occurred=datetime.now(UTC),
            id=uuid4(),
        ).receive()

    first, second = [event(n) for n in range(30)], [event(n) for n in range(30, 35)]

    async def store_and_read() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        db = provide_database_interface()
        await db.create_db()
        # The second batch repeats two of the first, and one of its own.
        for batch in (first, second + first[:2] + second[:1]):
            async with db.session_context(begin_transaction=True) as session:
                await database.write_events(session=session, events=batch)
        async with db.session_context() as session:
            stored = await database.read_events(session, EventFilter(), limit=100)
            odd = EventFilter(
                related=EventRelatedFilter(resources_in_roles=[("tradelane.partner.3", "partner")])
            )
            of_partner_3 = await database.read_events(session, odd, limit=100)
            one = EventFilter(resource=EventResourceFilter(id=["tradelane.file.7"]))
            file_7 = await database.read_events(session, one, limit=100)
            resources = (
                await session.execute(
                    text(
                        "SELECT resource_id, resource_role, resource, event_id, id, updated "
                        " FROM event_resources"
                    )
                )
            ).all()
        return list(stored), list(of_partner_3), list(file_7), list(resources)

    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: events_database}):
        stored, of_partner_3, file_7, resources = asyncio.run(store_and_read())
    by_id = {row.id: row for row in stored}
    assert len(stored) == 35 and len(resources) == 35 * 3
    for sent in first + second:
        row = by_id[sent.id]
        # NaN, which PostgreSQL's JSON refuses, is stored as null (as Prefect's JSON type does).
        expected = {**sent.payload, "ratio": None} if sent.resource.id == "tradelane.file.5" else sent.payload
        assert (row.event, row.resource_id, row.payload) == (sent.event, sent.resource.id, expected)
        assert [r["prefect.resource.id"] for r in row.related] == [r.id for r in sent.related]
    assert sorted(e.resource_id for e in of_partner_3) == sorted(
        f"tradelane.file.{n}" for n in range(1, 35, 2)
    )
    assert [e.id for e in file_7] == [first[7].id]
    sent_by_id = {e.id: e for e in first + second}
    assert len({row.id for row in resources}) == len(resources)  # each row its own id
    for resource_id, role, labels, event_id, _, updated in resources:
        sent = sent_by_id[UUID(str(event_id))]
        labels = json.loads(labels) if isinstance(labels, str) else labels
        if resource_id == sent.resource.id:
            assert role == "" and labels == {"prefect.resource.name": sent.resource.name}
        else:
            related = next(r for r in sent.related if r.id == resource_id)
            assert role == related.role
            assert labels == {
                k: v
                for k, v in related.root.items()
                if k not in ("prefect.resource.id", "prefect.resource.role")
            }
        assert updated is not None


def test_sqlite_stores_each_event_as_prefects_own_writer_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our SQLite writer hands the driver rows already in the form SQLite keeps: the same text,
    column by column, as Prefect's own writer stores through its column types (times in UTC in
    SQLAlchemy's format, whatever zone they came in; JSON as the standard library writes it, NaN
    as null; UUIDs as text; no `follows` as NULL). Only what is made at write time differs: the
    resource rows' ids, and the created, updated and recorded times, which keep the same form."""
    from datetime import timedelta, timezone

    from prefect.server.database import provide_database_interface
    from prefect.server.events.schemas.events import Event
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    from deployments import prefect_event_writes

    forget_prefect_database(monkeypatch)
    berlin = timezone(timedelta(hours=2))
    events = [
        Event(
            event=f"tradelane.file.{kind}",
            resource={"prefect.resource.id": f"tradelane.file.{n}", "prefect.resource.name": f"fïle {n}"},
            related=[
                {"prefect.resource.id": f"tradelane.partner.{n}", "prefect.resource.role": "partner",
                 "prefect.resource.name": 'acme "quoted" ünïcode'},
            ][: n % 2],
            payload=payload,
            occurred=datetime(2026, 12, 7, 1, 2, 3, n, tzinfo=berlin if n % 2 else UTC),
            follows=uuid4() if n == 1 else None,
            id=uuid4(),
        ).receive()
        for n, (kind, payload) in enumerate(
            [
                ("delivered", {"size": 5, "ratio": 0.1, "big": 2**80, "nested": {"a": [1, None, "é"]}}),
                ("failed", {"ratio": float("nan"), "inf": float("-inf"), "error": "line\nbreak"}),
                ("received", {}),
            ]
        )
    ]  # fmt: skip
    # Made at write time: each table's created and updated, an event's recorded, a resource row's id.
    at_write_time = ({"created", "updated", "recorded"}, {"id", "created", "updated"})

    async def stored_by(writer: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        db = provide_database_interface()
        await db.create_db()
        async with db.session_context(begin_transaction=True) as session:
            await session.execute(text("DELETE FROM event_resources"))
            await session.execute(text("DELETE FROM events"))
            await writer(session=session, events=events)
        async with db.session_context() as session:
            tables = []
            for table, order in (("events", "id"), ("event_resources", "event_id, resource_id")):
                rows = (await session.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))).mappings()
                tables.append([dict(row) for row in rows])
        return tables[0], tables[1]

    url = f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: url}):
        prefects = asyncio.run(stored_by(prefect_event_writes.prefect_write_sqlite_events))
        ours = asyncio.run(stored_by(prefect_event_writes.write_sqlite_events))

    for theirs_rows, our_rows, made in zip(prefects, ours, at_write_time, strict=True):
        assert len(our_rows) == len(theirs_rows) > 0
        for theirs, mine in zip(theirs_rows, our_rows, strict=True):
            assert theirs.keys() == mine.keys()
            assert {k: v for k, v in mine.items() if k not in made} == {
                k: v for k, v in theirs.items() if k not in made
            }
            for column in made:
                assert type(mine[column]) is type(theirs[column]) and len(mine[column]) == len(theirs[column])
    assert {row["occurred"] for row in ours[0]} >= {"2026-12-06 23:02:03.000001"}  # +02:00 → UTC
    assert [row["follows"] is None for row in ours[0]].count(False) == 1


def test_a_sqlite_batch_that_fails_part_way_stores_nothing_and_its_retry_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The persister's session sends no BEGIN of its own; the driver (Python's sqlite3, in its
    default isolation level) begins one before the first insert, so a batch's executemany calls
    are one transaction, committed by the persister. Were each row its own transaction, a batch
    whose resource rows fail after its events went in would leave those events stored without
    resources, and the retry would skip them. A failure leaves nothing; the retry stores every
    event with all its resources."""
    from prefect.server.database import provide_database_interface
    from prefect.server.events.schemas.events import Event
    from prefect.server.events.storage import database
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    from deployments import prefect_event_writes

    forget_prefect_database(monkeypatch)
    prefect_server.install()
    events = [
        Event(
            event="tradelane.file.delivered",
            resource={"prefect.resource.id": f"tradelane.file.{n}"},
            related=[{"prefect.resource.id": "tradelane.partner.1", "prefect.resource.role": "partner"}],
            occurred=datetime.now(UTC),
            id=uuid4(),
        ).receive()
        for n in range(5)
    ]
    rows_of = prefect_event_writes._sqlite_resource_rows

    def third_fails(event: Any, now: str) -> list[dict[str, Any]]:
        rows = rows_of(event, now)
        if event is events[2]:
            rows[0]["resource_id"] = None  # NOT NULL: the resource insert fails after the events'
        return rows

    async def flush_as_the_persister_does() -> None:
        db = provide_database_interface()
        async with db.session_context() as session:  # no begin_transaction: no BEGIN is sent
            await database.write_events(session=session, events=events)
            await session.commit()

    async def counts() -> tuple[int, int]:
        db = provide_database_interface()
        async with db.session_context() as session:
            stored = (await session.execute(text("SELECT count(*) FROM events"))).scalar_one()
            resources = (await session.execute(text("SELECT count(*) FROM event_resources"))).scalar_one()
        return stored, resources

    async def fail_then_retry() -> tuple[tuple[int, int], tuple[int, int]]:
        await provide_database_interface().create_db()
        monkeypatch.setattr(prefect_event_writes, "_sqlite_resource_rows", third_fails)
        with pytest.raises(Exception, match="NOT NULL"):
            await flush_as_the_persister_does()
        after_failure = await counts()
        monkeypatch.setattr(prefect_event_writes, "_sqlite_resource_rows", rows_of)
        await flush_as_the_persister_does()
        return after_failure, await counts()

    url = f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: url}):
        after_failure, after_retry = asyncio.run(fail_then_retry())
    assert after_failure == (0, 0)
    assert after_retry == (5, 10)


def test_the_task_run_recorder_parses_only_task_run_events() -> None:
    """The server's task-run recorder (deployments/prefect_event_consumers) drops an event that is not
    a task run's by the name its message carries, unread: a message that cannot be parsed at all is
    acknowledged as a tradelane event, and still reaches Prefect's parser as a task-run event or
    when it carries no name."""
    import pydantic
    from prefect.server.services import task_run_recorder
    from prefect.server.utilities.messaging.memory import MemoryMessage

    from deployments import prefect_event_consumers

    prefect_server.install()
    assert task_run_recorder.consumer is prefect_event_consumers.task_run_events_only
    unparsable = b"{not an event"

    async def handle(attributes: dict[str, str] | None) -> None:
        async with task_run_recorder.consumer(write_batch_size=10, flush_every=60) as handler:
            await handler(MemoryMessage(unparsable, attributes))  # type: ignore[arg-type]

    asyncio.run(handle({"id": str(uuid4()), "event": "tradelane.file.delivered"}))
    asyncio.run(handle({"id": str(uuid4()), "event": "prefect.flow-run.Completed"}))
    for attributes in ({"id": str(uuid4()), "event": "prefect.task-run.Completed"}, None):
        try:
            asyncio.run(handle(attributes))
        except pydantic.ValidationError:
            continue
        raise AssertionError(f"a message with {attributes} was not parsed")


def test_the_event_stream_parses_only_events_a_subscriber_may_want() -> None:
    """The server's event stream (deployments/prefect_event_consumers) drops an event, unread, when every
    subscriber's name filter refuses its name; the others still reach subscribers as before: one
    whose filter takes the name, and one without a name filter (the UI's feed) takes them all."""
    from prefect.server.events import stream
    from prefect.server.events.filters import EventFilter, EventNameFilter
    from prefect.server.events.schemas.events import Event
    from prefect.server.utilities.messaging.memory import MemoryMessage

    from deployments import prefect_event_consumers

    prefect_server.install()
    assert stream.distributor is prefect_event_consumers.distributor_by_name
    unparsable = b"{not an event"

    def message(name: str) -> MemoryMessage:
        sent = Event(
            event=name,
            resource={"prefect.resource.id": "tradelane.file.1"},
            occurred=datetime.now(UTC),
            id=uuid4(),
        ).receive()
        return MemoryMessage(sent.model_dump_json().encode(), {"id": str(sent.id), "event": name})

    async def distribute(filters: list[EventFilter], messages: list[MemoryMessage]) -> list[list[str]]:
        async with contextlib.AsyncExitStack() as stack:
            queues = [await stack.enter_async_context(stream.subscribed(f)) for f in filters]
            async with stream.distributor() as handle:
                for sent in messages:
                    await handle(sent)
            return [[queue.get_nowait().event for _ in range(queue.qsize())] for queue in queues]

    names = ["tradelane.file.delivered", "prefect.flow-run.Cancelling", "tradelane.file.received"]
    tradelane_unparsable = [MemoryMessage(unparsable, {"id": str(uuid4()), "event": n}) for n in names[::2]]
    worker_alone = [*tradelane_unparsable, message(names[1])]
    with_the_feed = [message(n) for n in names]
    # Made after the events: a filter's default time window ends when it is made.
    cancelling = EventFilter(event=EventNameFilter(name=["prefect.flow-run.Cancelling"]))
    # A worker alone: the file events are not even parsed (these could not be), Cancelling reaches it.
    assert asyncio.run(distribute([cancelling], worker_alone)) == [[names[1]]]
    # With the UI's feed open as well: the feed gets all three, the worker still only its own.
    assert asyncio.run(distribute([cancelling, EventFilter()], with_the_feed)) == [[names[1]], names]


def test_the_triggers_skip_file_events_only_until_an_automation_may_want_them() -> None:
    """The reactive triggers (deployments/prefect_event_consumers) are not given a file event no
    loaded automation expects or starts after; once a notification rule's automation is loaded, the
    events it names reach them again (and the others still do not). Prefect's own events always do."""
    from prefect.server.events import triggers
    from prefect.server.events.actions import DoNothing
    from prefect.server.events.schemas.automations import Automation, EventTrigger, Posture

    from deployments import prefect_event_consumers

    prefect_server.install()
    assert triggers.consumer is prefect_event_consumers.triggers_by_name
    may_want = prefect_event_consumers.an_automation_may_want
    rule = Automation(
        name="failed files",
        trigger=EventTrigger(expect={"tradelane.file.failed"}, posture=Posture.Reactive, threshold=1),
        actions=[DoNothing()],
    )
    triggers.clear_loaded_automations()
    try:
        assert not may_want("tradelane.file.failed") and not may_want("tradelane.file.delivered")
        assert may_want("prefect.flow-run.Completed")
        triggers.load_automation(rule)
        assert may_want("tradelane.file.failed") and not may_want("tradelane.file.delivered")
        triggers.forget_automation(rule.id)
        assert not may_want("tradelane.file.failed")
    finally:
        triggers.clear_loaded_automations()


def test_a_received_event_is_the_event_as_prefect_would_receive_it() -> None:
    """deployments/prefect_event_receive builds the server's `ReceivedEvent` from the fields already
    validated: equal to what Prefect's own `receive` (dump and validate again) makes, field by field,
    in what it marks as given and in the JSON every consumer reads."""
    from prefect.server.events.schemas.events import Event, ReceivedEvent

    from deployments import prefect_event_receive

    sent = Event(
        event="tradelane.file.delivered",
        resource={"prefect.resource.id": "tradelane.file.7", "prefect.resource.name": "po 7.edi"},
        related=[
            {"prefect.resource.id": "tradelane.partner.3", "prefect.resource.role": "partner"},
            {"prefect.resource.id": "prefect.flow-run.1", "prefect.resource.role": "flow-run"},
        ],
        payload={"size": 7, "nested": {"list": [1, 2]}},
        occurred=datetime.now(UTC),
        id=uuid4(),
        follows=uuid4(),
    )
    prefects = ReceivedEvent(**sent.model_dump())  # what Prefect's `receive` does
    prefect_server.install()
    assert Event.receive is prefect_event_receive.receive  # type: ignore[comparison-overlap]
    ours = sent.receive()
    assert type(ours) is ReceivedEvent and type(ours.related[0]) is type(prefects.related[0])
    assert ours.model_fields_set == prefects.model_fields_set
    assert ours.model_dump(exclude={"received"}) == prefects.model_dump(exclude={"received"})
    assert ours.model_dump_json(exclude={"received"}) == prefects.model_dump_json(exclude={"received"})
    assert prefects.received <= ours.received <= datetime.now(UTC)
    assert ReceivedEvent.model_validate_json(ours.model_dump_json()) == ours


def test_each_subscriber_of_a_topic_gets_a_copy_of_its_own() -> None:
    """Topics hand each subscription a plain copy of a message (deployments/prefect_message_copies):
    the same content, nothing mutable shared, as Prefect's deep copy gave."""
    from prefect.server.utilities.messaging import memory

    from deployments import prefect_message_copies

    prefect_server.install()
    assert memory.Topic.publish is prefect_message_copies.publish
    topic = memory.Topic("copies-test")
    first, second = topic.subscribe(), topic.subscribe()
    sent = memory.MemoryMessage(b'{"event": "x"}', {"id": "1", "event": "x", "tags": ["a"]}, retry_count=1)
    asyncio.run(topic.publish(sent))
    one, other = first._queue.get_nowait(), second._queue.get_nowait()
    for got in (one, other):
        assert got is not sent and got == sent
    one.retry_count += 1
    one.attributes["event"] = "changed"  # type: ignore[index]
    one.attributes["tags"].append("b")  # type: ignore[index]
    assert other == sent and sent.attributes == {"id": "1", "event": "x", "tags": ["a"]}
    assert (sent.retry_count, other.retry_count) == (1, 1)


def test_settings_read_without_the_import_are_the_current_ones() -> None:
    """deployments/prefect_settings_lookup: the event schemas and `Setting.value()` read the settings
    in force, a temporary change included, as `get_current_settings()` does."""
    import prefect.server.events.schemas.events as event_schemas
    import prefect.settings.legacy as legacy_settings
    from prefect.server.events.schemas.events import Resource
    from prefect.settings import (
        PREFECT_EVENTS_MAXIMUM_LABELS_PER_RESOURCE,
        get_current_settings,
        temporary_settings,
    )

    from deployments import prefect_settings_lookup

    prefect_server.install()
    assert event_schemas.get_current_settings is prefect_settings_lookup.current_settings
    assert legacy_settings.get_current_settings is prefect_settings_lookup.current_settings
    assert prefect_settings_lookup.current_settings() is get_current_settings()
    labels = {"prefect.resource.id": "tradelane.file.1", **{f"l{n}": "v" for n in range(5)}}
    Resource.model_validate(labels)
    with temporary_settings({PREFECT_EVENTS_MAXIMUM_LABELS_PER_RESOURCE: 3}):
        assert prefect_settings_lookup.current_settings() is get_current_settings()
        assert PREFECT_EVENTS_MAXIMUM_LABELS_PER_RESOURCE.value() == 3
        with pytest.raises(ValueError, match="maximum number of labels per resource is 3"):
            Resource.model_validate(labels)
    Resource.model_validate(labels)

    # The event name's limit, now kept in `prefect.settings`, is still the one in force.
    import prefect.settings
    from prefect.server.events.schemas.events import Event

    assert "PREFECT_SERVER_EVENTS_MAXIMUM_EVENT_NAME_LENGTH" in vars(prefect.settings)
    limit = prefect.settings.PREFECT_SERVER_EVENTS_MAXIMUM_EVENT_NAME_LENGTH
    named = {"occurred": datetime.now(UTC), "resource": {"prefect.resource.id": "x"}, "id": uuid4()}
    Event(event="tradelane.file.delivered", **named)
    with temporary_settings({limit: 10}), pytest.raises(ValueError, match="at most 10 characters"):
        Event(event="tradelane.file.delivered", **named)


def test_a_session_opened_inside_a_write_transaction_reads_without_waiting_for_its_lock(
    tmp_path: Path,
) -> None:
    """Prefect opens sessions of its own inside a write transaction (a work queue's status event
    reads the queue while the update that changed it is not yet committed) and spawns tasks from
    one (the automations' cache refresh after a commit). Those begin as Prefect would begin them,
    not IMMEDIATE: an inner session asking for the write lock its own caller holds waited SQLite's
    busy timeout (60 s), the whole server stalled behind it, and the client saw no answer."""
    db, config = prefect_sqlite_with_a_table(tmp_path)

    async def main() -> None:
        engine = await config.engine()
        outer = await config.session(engine)
        async with outer, config.begin_transaction(outer):
            await outer.execute(text("INSERT INTO t VALUES (1)"))
            inner = await config.session(engine)
            async with inner:
                seen = await asyncio.wait_for(inner.execute(text("SELECT count(*) FROM t")), timeout=5)
                assert seen.scalar() == 0  # the outer write is not committed yet

            async def spawned() -> int:
                session = await config.session(engine)
                async with session:
                    return (await session.execute(text("SELECT count(*) FROM t"))).scalar_one()

            assert await asyncio.wait_for(asyncio.create_task(spawned()), timeout=5) == 0

            # What a task spawned as the transaction commits (Prefect's `after_commit` listener
            # refreshing the automations' cache) begins with.
            @event.listens_for(outer.sync_session, "after_commit", once=True)
            def at_commit(_: Any) -> None:
                modes_at_commit.append(SQLITE_BEGIN_MODE.get())

        await engine.dispose()

    modes_at_commit: list[str | None] = []
    asyncio.run(main())
    assert modes_at_commit == [None]
    assert SQLITE_BEGIN_MODE.get() is None  # and after the transaction, what it was before
    with closing(sqlite3.connect(db)) as conn:
        assert [n for (n,) in conn.execute("SELECT n FROM t")] == [1]
