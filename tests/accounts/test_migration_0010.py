"""Migration 0010 on SQLite and PostgreSQL: a store from before accounts were tenants keeps every row
in `home` and works as before, a second account can be added, and data that breaks the new
instance-wide rules stops the upgrade with a message saying what to fix."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from core import accounts, dataflows, partners
from core.as2 import identity
from core.db import get_engine, migrate, session_scope
from core.endpoints import rows as endpoint_rows
from core.intake import receive_stream
from core.models import Partner
from core.tenancy import scope_for_cli
from tests import migration_store
from tests.migration_store import downgrade_to
from tests.tenancy import home_scope

OWNED = ("partner", "endpoint", "dataflow", "receipt", "as2organization")

store = migration_store.store  # the fixture: a fresh store on SQLite and on PostgreSQL


def _fill_home(tmp_path: Path) -> int:
    """A partner, endpoint, flow, receipt + transfer and an AS2 identity, as 0009 would hold them."""
    (tmp_path / "out").mkdir()
    with session_scope() as session:
        scope = home_scope(session)
        partner = partners.add(session, scope, "acme", password="Pw-0010-migration")
        endpoint_rows.add(session, scope, "archive", "file", {"path": str(tmp_path / "out")})
        dataflows.add(session, scope, "acme-archive", source="mailbox:acme", dest="archive")
        key, cert = identity.self_signed("OURS")
        identity.create(session, scope, "OURS", key, cert)
    receipt = receive_stream(partner, "upload", "po.json", io.BytesIO(b"{}"), protocol="rest")
    assert receipt.id is not None
    return receipt.id


def test_a_store_from_0009_is_all_home_and_takes_a_second_account(store: None, tmp_path: Path) -> None:
    receipt_id = _fill_home(tmp_path)
    downgrade_to("0009")
    assert "accountuser" not in inspect(get_engine()).get_table_names()
    migrate()
    with get_engine().connect() as conn:
        home_id = conn.execute(text("SELECT id FROM account WHERE name = 'home'")).scalar_one()
        for table in OWNED:
            owners = set(conn.execute(text(f"SELECT DISTINCT account_id FROM {table}")).scalars())
            assert owners == {home_id}, table
        assert conn.execute(text(f"SELECT user_id FROM receipt WHERE id = {receipt_id}")).scalar_one() is None
    with session_scope() as session:
        scope = home_scope(session)
        assert [p.name for p in partners.list_all(session, scope)] == ["acme"]
        assert dataflows.require(session, scope, "acme-archive").enabled
        accounts.add(session, "globex", email="admin@globex.example", password="Pw-0010-second-account")
    with session_scope() as session:
        globex = scope_for_cli(session, "globex")
        partners.add(session, globex, "initech", password="Pw-0010-migration")
        assert partners.list_all(session, globex)[0].name == "initech"
        assert [p.name for p in partners.list_all(session, home_scope(session))] == ["acme"]
    # The database itself holds partner names unique on the instance, whatever code writes.
    with pytest.raises(IntegrityError), session_scope() as session:
        session.add(Partner(account_id=scope_for_cli(session, "globex").account_id, name="acme"))
        session.flush()


def test_duplicate_login_names_stop_the_upgrade_with_what_to_fix(store: None) -> None:
    downgrade_to("0009")
    with get_engine().begin() as conn:
        conn.execute(text("INSERT INTO account (name, created_at) VALUES ('globex', CURRENT_TIMESTAMP)"))
        for account in ("home", "globex"):
            conn.execute(
                text(
                    "INSERT INTO partner (uid, account_id, name, ssh_public_keys, enabled,"
                    " can_delete_downloads, allowed_networks, created_at)"
                    " SELECT :uid, id, 'acme', '[]', true, true, '[]',"
                    " CURRENT_TIMESTAMP FROM account WHERE name = :account"
                ),
                {"uid": f"uid-{account}", "account": account},
            )
    with pytest.raises(RuntimeError, match="partner name 'acme' is used more than once"):
        migrate()
    assert "accountuser" not in inspect(get_engine()).get_table_names()  # nothing changed
