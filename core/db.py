"""The database's engine and sessions: a SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlmodel import Session, create_engine, select

from core.config import get_settings
from core.models import Account

HOME_ACCOUNT = "home"
# A pooled PostgreSQL connection idle longer than this is pinged before it is used again.
PING_AFTER_IDLE_SECONDS = 5.0
# The PostgreSQL advisory lock taken around migrations (any fixed number; "tl" in ASCII).
MIGRATION_LOCK = 0x746C


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL + a busy timeout let the API, the runner's flow processes and the CLI share one file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
    # A migration turns them off for its run (migrations/env.py); every connection back in the pool
    # enforces them again (after the pool's rollback, so outside a transaction, where SQLite heeds it).
    if dbapi_connection is not None:
        dbapi_connection.execute("PRAGMA foreign_keys=ON")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkin", _foreign_keys_on)
        return engine
    engine = create_engine(url)
    # Not `pool_pre_ping`, which pings at every checkout: a round trip for each of the many short
    # transactions a file costs, on both sides. A connection back in the pool a moment ago is
    # alive unless the server went away in that moment; then its next statement fails once and
    # SQLAlchemy replaces every pooled connection (the disconnect invalidates the pool).
    event.listen(engine, "checkin", _stamp_idle)
    event.listen(engine, "checkout", _ping_if_idle_long(engine.dialect))
    return engine


def _stamp_idle(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle_long(dialect: Any) -> Callable[[Any, Any, Any], None]:
    def ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)  # none: connected for this checkout
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise DisconnectionError(str(exc)) from exc  # the pool connects afresh and retries
            raise

    return ping


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().db_url)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def autocommit() -> Iterator[Connection]:
    """A connection on which each statement is its own transaction, for a lone read: on
    PostgreSQL one round trip, where a transaction costs three (BEGIN, the read, ROLLBACK).
    SQLite's driver begins no transaction for a read anyway; there, switching the connection to
    autocommit and back would only cost a statement more (a third more CPU per read)."""
    with get_engine().connect() as connection:
        if connection.dialect.name == "sqlite":
            yield connection
        else:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")


def migrate(engine: Engine | None = None) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    import migrations

    engine = engine or get_engine()
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Roles started at once on one store (`tradelane serve ...`): one migrates, the others
            # wait here, then find the schema at head. Held until this transaction ends.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def init_db() -> None:
    """Migrate and make sure the `home` account exists (first start)."""
    migrate()
    try:
        with session_scope() as session:
            if session.exec(select(Account).where(Account.name == HOME_ACCOUNT)).first() is None:
                session.add(Account(name=HOME_ACCOUNT))
    except IntegrityError:  # another role starting at once on the same store added it first
        pass


def home_account_id(session: Session) -> int:
    account = session.exec(select(Account).where(Account.name == HOME_ACCOUNT)).one()
    assert account.id is not None
    return account.id
