"""Migration 0025 (the web) on SQLite and PostgreSQL: a store of 0024 with transfers in two accounts
gets `transfer.account_id` backfilled from each transfer's data flow, NOT NULL from then on, the
history indexes, and the `web_session` / `web_upload` tables exactly as the models describe them."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from core import accounts, dataflows, partners, transfers
from core.db import get_engine, migrate, session_scope
from core.endpoints import rows as endpoint_rows
from core.endpoints.rows import scrubber
from core.intake import receive_stream
from core.models import WebUpload, utcnow
from core.tenancy import scope_for_cli
from tests import migration_store
from tests.migration_store import downgrade_to
from tests.tenancy import home_scope

OURS = ("web_session", "web_upload", "transfer", "receipt", "auditevent")

store = migration_store.store  # the fixture: a fresh store on SQLite and on PostgreSQL


def _account_with_a_transfer(tmp_path: Path, account: str, partner: str) -> None:
    out = tmp_path / f"out-{account}"
    out.mkdir()
    with session_scope() as session:
        if account != "home":
            accounts.add(session, account, email=f"admin@{account}.example", password="Pw-0025-migration")
    with session_scope() as session:
        scope = scope_for_cli(session, account)
        row = partners.add(session, scope, partner, password="Pw-0025-migration")
        endpoint_rows.add(session, scope, "archive", "file", {"path": str(out)})
        dataflows.add(session, scope, f"{partner}-archive", source=f"mailbox:{partner}", dest="archive")
    receive_stream(row, "upload", f"{partner}.json", io.BytesIO(b"{}"), protocol="rest")


def test_a_0024_store_gets_each_transfer_its_flows_account(store: None, tmp_path: Path) -> None:
    _account_with_a_transfer(tmp_path, "home", "acme")
    _account_with_a_transfer(tmp_path, "globex", "initech")
    downgrade_to("0024")
    tables = inspect(get_engine()).get_table_names()
    assert "web_session" not in tables and "web_upload" not in tables
    assert "account_id" not in {c["name"] for c in inspect(get_engine()).get_columns("transfer")}

    migrate()
    with get_engine().connect() as conn:
        pairs = conn.execute(
            text(
                "SELECT a.name, t.account_id, d.account_id FROM transfer t"
                " JOIN dataflow d ON d.id = t.data_flow_id JOIN account a ON a.id = t.account_id"
                " ORDER BY a.name"
            )
        ).all()
        assert [(name, mine == flows) for name, mine, flows in pairs] == [("globex", True), ("home", True)]
        column = next(c for c in inspect(conn).get_columns("transfer") if c["name"] == "account_id")
        assert column["nullable"] is False
        indexes = {i["name"] for table in OURS for i in inspect(conn).get_indexes(table)}
        assert {
            "ix_transfer_account_id_id",
            "ix_transfer_account_state_id",
            "ix_transfer_data_flow_id_id",
            "ix_transfer_flow_run_id",
            "ix_transfer_account_created",
            "ix_receipt_partner_id_id",
            "ix_receipt_user_id_id",
            "ix_auditevent_account_id_id",
            "uq_web_upload_open",
        } <= indexes
        assert not {"ix_transfer_data_flow_id", "ix_receipt_partner_id", "ix_auditevent_account_id"} & indexes
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert [d for d in diffs if any(table in repr(d) for table in OURS)] == []

    # Each account's history shows its own transfer only, by the new column.
    with session_scope() as session:
        for account, file in (("home", "acme.json"), ("globex", "initech.json")):
            scope = scope_for_cli(session, account)
            page = transfers.page(session, scope, scrubber=scrubber(session, scope))
            assert [row.file for row in page.rows] == [file]
            assert sum(transfers.counts(session, scope).values()) == 1
    # NOT NULL holds for whatever code writes.
    with pytest.raises(IntegrityError), get_engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO transfer (receipt_id, data_flow_id, state, attempts, waits, created_at,"
                " updated_at) SELECT receipt_id, data_flow_id, 'pending', 0, 0, created_at, updated_at"
                " FROM transfer LIMIT 1"
            )
        )


def test_one_open_upload_per_login_folder_and_name(store: None) -> None:
    """The partial unique index: a second open row for the same file is refused, a finished one is not."""
    later = utcnow() + timedelta(days=1)
    with session_scope() as session:
        account_id = home_scope(session).account_id

    def row(upload_id: str, state: str = "open") -> WebUpload:
        return WebUpload(
            id=upload_id, kind="partner", principal_id=7, account_id=account_id, folder="upload",
            name="po.json", length=10, state=state, expires_at=later,
        )  # fmt: skip

    with session_scope() as session:
        session.add(row("a" * 32, state="done"))
        session.add(row("b" * 32))
        session.add(row("c" * 32, state="cancelled"))
    with pytest.raises(IntegrityError), session_scope() as session:
        session.add(row("d" * 32))
        session.flush()
