"""What the migration tests share: a fresh store on SQLite and on PostgreSQL, and a downgrade."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

import migrations
from core.db import get_engine, init_db
from tests.isolation import isolated_home


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """A home whose store is at the newest migration, on each database (PostgreSQL's schema emptied)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    if url:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    with isolated_home(tmp_path, database_url=url):
        init_db()
        yield


def downgrade_to(revision: str) -> None:
    """Take the home's store back to `revision` with Alembic."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    with get_engine().begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)
