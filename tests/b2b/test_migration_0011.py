"""Migration 0011 on SQLite and PostgreSQL: a store from before connections keeps its rows (receipts
not held, flows not a connection's, transfers without an error kind), and it goes down and up again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

import migrations
from core.db import get_engine, init_db, migrate, session_scope
from core.intake import record_receipt
from tests.isolation import isolated_home


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    if url:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    with isolated_home(tmp_path / "home", database_url=url):
        _alembic("upgrade", "0009")  # the store as it was before connections
        yield tmp_path


def _alembic(action: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    with get_engine().begin() as connection:
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, revision)


def test_a_store_from_before_connections_upgrades(store: Path) -> None:
    engine = get_engine()
    assert "connection" not in inspect(engine).get_table_names()
    with (
        engine.begin() as conn
    ):  # rows written before 0011: an account, a partner, a flow, a receipt, a transfer
        conn.execute(text("INSERT INTO account (name, created_at) VALUES ('home', CURRENT_TIMESTAMP)"))
        conn.execute(
            text(
                "INSERT INTO partner (uid, account_id, name, ssh_public_keys, enabled, can_delete_downloads, "
                "allowed_networks, created_at) "
                "VALUES ('u1', 1, 'acme', '[]', true, true, '[]', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO endpoint (account_id, name, type, config, created_at) "
                "VALUES (1, 'lake', 'file', '{}', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO dataflow (account_id, name, source_partner_id, source_folder, pattern, "
                "dest_endpoint_id, dest_path, validators, retries, retry_delay_seconds, enabled, after_pull, "
                "created_at, updated_at) "
                "VALUES (1, 'acme-lake', 1, 'upload', '*', 1, '{name}', '[]', 5, 2.0, "
                "true, 'keep', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO receipt (account_id, partner_id, protocol, folder, name, size, sha256, "
                "storage_path, received_at) "
                "VALUES (1, 1, 'rest', 'upload', 'old.json', 2, :s, '.store/x', CURRENT_TIMESTAMP)"
            ),
            {"s": "0" * 64},
        )
        conn.execute(
            text(
                "INSERT INTO transfer (receipt_id, data_flow_id, state, attempts, created_at, updated_at) "
                "VALUES (1, 1, 'delivered', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    init_db()
    flow_id = 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name, held, connection_id FROM receipt")).one() == (
            "old.json",
            False,
            None,
        )
        assert conn.execute(
            text("SELECT source_connection_id FROM dataflow WHERE id = :i"), {"i": flow_id}
        ).one() == (None,)
        assert conn.execute(text("SELECT count(*) FROM connection")).scalar() == 0
    with session_scope() as session:  # the old rows still work with the new columns
        record_receipt(
            session,
            account_id=1,
            partner_id=1,
            partner_name="acme",
            folder="upload",
            name="new.json",
            size=2,
            sha256="1" * 64,
            protocol="rest",
            storage_path=".store/y",
        )
    with engine.connect() as conn:  # the old delivery, and the new file's transfer by the old flow
        assert conn.execute(text("SELECT count(*) FROM transfer")).scalar() == 2
    # And down again (what an operator rolling back would run), then up.
    _alembic("downgrade", "0009")
    assert "connection" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM receipt")).scalar() == 2
    migrate()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM transfer")).scalar() == 2
