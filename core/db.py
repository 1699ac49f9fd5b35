"""The database's engine and sessions: a SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, create_engine, select

from core.config import get_settings
from core.models import Account

HOME_ACCOUNT = "home"
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
    return create_engine(url, pool_pre_ping=True)


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
