"""The store on SQLite and on a real PostgreSQL: migrations, secrets at rest, receipts, batching, replay."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from cli.endpoint_flags import endpoint_options
from core import dataflows, partners, transfers
from core.crypto import decrypt_json
from core.db import get_engine, init_db, session_scope
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import ConfigError
from core.intake import record_receipt
from core.login import LoginPolicy, LoginRefused
from core.models import AuditEvent, Transfer, TransferState
from tests.isolation import isolated_home
from tests.tenancy import home_scope


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    if url:
        # A fresh schema per test keeps PostgreSQL runs independent.
        from sqlalchemy import create_engine

        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    with isolated_home(tmp_path, database_url=url):
        init_db()
        yield request.param


def _setup(tmp_path: Path) -> tuple[int, int]:
    with session_scope() as session:
        partner = partners.add(session, home_scope(session), "acme", password="s3cret-Passw0rd")
        endpoint_rows.add(
            session,
            home_scope(session),
            "vault",
            "s3",
            {"bucket": "b"},
            {"access_key_id": "AKIA", "secret_access_key": "TOPSECRET"},
        )
        endpoint_rows.add(session, home_scope(session), "archive", "file", {"path": str(tmp_path / "out")})
        flow = dataflows.add(
            session, home_scope(session), "acme-vault", source="mailbox:acme", dest="vault", pattern="*.json"
        )
        assert partner.id is not None and flow.id is not None
        return partner.id, flow.id


def test_migrations_are_idempotent(store: str) -> None:
    from alembic.script import ScriptDirectory

    import migrations

    init_db()
    init_db()
    head = ScriptDirectory(str(Path(migrations.__file__).parent)).get_current_head()
    with get_engine().connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head


def test_sqlite_enforces_foreign_keys_again_after_a_migration_turned_them_off(tmp_path: Path) -> None:
    """Migrations run with SQLite's foreign keys off (a table rebuild drops what rows reference);
    every connection the application gets afterwards enforces them."""
    with isolated_home(tmp_path / "home"):
        init_db()
        engine = get_engine()
        for _ in range(engine.pool.size() + 2):  # whichever pooled connection comes back
            with engine.connect() as conn:
                assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_passwords_are_hashed_and_secrets_encrypted_at_rest(store: str, tmp_path: Path) -> None:
    _setup(tmp_path)
    with get_engine().connect() as conn:
        raw = conn.execute(text("SELECT secrets FROM endpoint WHERE name = 'vault'")).scalar()
        pw = conn.execute(text("SELECT password_hash FROM partner WHERE name = 'acme'")).scalar()
    assert "TOPSECRET" not in raw and pw.startswith("$argon2")
    assert decrypt_json(raw) == {"access_key_id": "AKIA", "secret_access_key": "TOPSECRET"}
    policy = LoginPolicy()
    assert policy.password("acme", "s3cret-Passw0rd", None, "test").name == "acme"
    for user, password in (("acme", "wrong"), ("nobody", "s3cret-Passw0rd")):
        with pytest.raises(LoginRefused):
            policy.password(user, password, None, "test")
    with session_scope() as session:
        audit = session.exec(select(AuditEvent).where(AuditEvent.action == "endpoint.add")).first()
        assert audit is not None and "TOPSECRET" not in str(audit.detail)


def test_an_sftp_private_key_is_encrypted_at_rest(store: str, tmp_path: Path) -> None:
    key_file = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)], check=True)
    key_text = key_file.read_text()
    host_key = " ".join(key_file.with_suffix(".pub").read_text().split()[:2])  # any valid key line
    config, secrets = endpoint_options(
        "sftp", {"host": "sftp.example", "user": "us", "key": key_file, "host_key": host_key}
    )
    with session_scope() as session:
        endpoint_rows.add(session, home_scope(session), "partner-sftp", "sftp", config, secrets)
    with get_engine().connect() as conn:
        raw_config, raw_secrets = conn.execute(
            text("SELECT config, secrets FROM endpoint WHERE name = 'partner-sftp'")
        ).one()
    body = key_text.splitlines()[1]  # a line of the key itself, not its armour
    assert body not in str(raw_config) and body not in raw_secrets
    assert decrypt_json(raw_secrets) == {"private_key": key_text}


def test_a_bad_endpoint_setting_is_refused_before_anything_is_stored(store: str) -> None:
    with session_scope() as session, pytest.raises(ConfigError, match="part_size"):
        endpoint_rows.add(
            session, home_scope(session), "tiny-parts", "s3", {"bucket": "b", "part_size": 1024}
        )
    with session_scope() as session:
        assert endpoint_rows.get(session, home_scope(session), "tiny-parts") is None


def test_receipt_creates_one_transfer_per_matching_flow_and_batches_are_bounded(
    store: str, tmp_path: Path
) -> None:
    partner_id, _flow_id = _setup(tmp_path)
    with session_scope() as session:
        dataflows.add(session, home_scope(session), "acme-archive", source="mailbox:acme", dest="archive")
        for i in range(7):
            record_receipt(
                session,
                account_id=1,
                partner_id=partner_id,
                partner_name="acme",
                folder="upload",
                name=f"po{i}.json",
                size=3,
                sha256="0" * 64,
                protocol="rest",
                storage_path=f".store/test/{i}",
            )
        record_receipt(
            session,
            account_id=1,
            partner_id=partner_id,
            partner_name="acme",
            folder="upload",
            name="notes.txt",
            size=3,
            sha256="0" * 64,
            protocol="rest",
            storage_path=".store/test/x",
        )
    with session_scope() as session:
        rows = session.exec(select(Transfer)).all()
        assert len(rows) == 7 * 2 + 1  # *.json matches both flows; notes.txt only the catch-all
        transfers.claim_batches(session, batch_size=3)
    with session_scope() as session:
        batches = transfers.unlaunched_batches(session)
        assert all(len(b.transfer_ids) <= 3 for b in batches)
        assert sum(len(b.transfer_ids) for b in batches) == 15
        assert {len({b.data_flow_id}) for b in batches} == {1}
        transfers.mark_launched(session, batches[0].key, "run-1")
    with session_scope() as session:
        assert len(transfers.unlaunched_batches(session)) == len(batches) - 1
        # Claiming again never re-batches what already has a batch.
        transfers.claim_batches(session, batch_size=3)
    with session_scope() as session:
        assert len(transfers.unlaunched_batches(session)) == len(batches) - 1


def test_files_of_a_disabled_flow_wait_unbatched_and_go_in_one_batch_once_it_is_enabled(
    store: str, tmp_path: Path
) -> None:
    """The dispatcher claims after every receipt: a disabled flow's backlog must not be cut into a
    batch per wake (enabling it then started one run per few files: a burst of 200 took minutes)."""
    partner_id, flow_id = _setup(tmp_path)
    with session_scope() as session:
        dataflows.set_enabled(session, home_scope(session), "acme-vault", False)
    for i in range(5):
        with session_scope() as session:
            record_receipt(
                session,
                account_id=1,
                partner_id=partner_id,
                partner_name="acme",
                folder="upload",
                name=f"po{i}.json",
                size=3,
                sha256="0" * 64,
                protocol="rest",
                storage_path=f".store/test/{i}",
            )
        with session_scope() as session:
            transfers.claim_batches(session, batch_size=200)
    with session_scope() as session:
        assert all(t.batch_key is None for t in session.exec(select(Transfer)).all())
        dataflows.set_enabled(session, home_scope(session), "acme-vault", True)
    with session_scope() as session:
        transfers.claim_batches(session, batch_size=200)
    with session_scope() as session:
        [batch] = transfers.unlaunched_batches(session)
        assert batch.data_flow_id == flow_id and len(batch.transfer_ids) == 5


def test_replay_and_requeue(store: str, tmp_path: Path) -> None:
    partner_id, _flow_id = _setup(tmp_path)
    with session_scope() as session:
        record_receipt(
            session,
            account_id=1,
            partner_id=partner_id,
            partner_name="acme",
            folder="upload",
            name="a.json",
            size=1,
            sha256="0" * 64,
            protocol="rest",
            storage_path=".store/test/x",
        )
    with session_scope() as session:
        transfer = session.exec(select(Transfer)).one()
        assert transfer.id is not None
        with pytest.raises(transfers.TransferError, match="still pending"):
            transfers.replay(session, home_scope(session), transfer.id)
        transfers.finish(session, transfer, TransferState.failed, error="boom")
    with session_scope() as session:
        copy = transfers.replay(session, home_scope(session), transfer.id)
        assert copy.state == TransferState.pending and copy.replay_of == transfer.id
        copy.batch_key, copy.flow_run_id = "k", "dead-run"
        session.add(copy)
    with session_scope() as session:
        assert [t.id for t in transfers.in_flight(session)] == [copy.id]
        transfers.requeue(session, [copy.id], "run died")  # type: ignore[list-item]
    with session_scope() as session:
        again = session.get(Transfer, copy.id)
        assert again is not None and again.batch_key is None and again.flow_run_id is None
        assert again.error == "run died"


def test_partner_names_and_duplicates_are_refused(store: str, tmp_path: Path) -> None:
    _setup(tmp_path)
    with session_scope() as session:
        for bad in ("", "../x", "a/b", ".hidden", "x" * 65):
            with pytest.raises(partners.PartnerError):
                partners.add(session, home_scope(session), bad, password="partner-Pass-1")
        with pytest.raises(partners.PartnerError, match="already exists"):
            partners.add(session, home_scope(session), "acme", password="partner-Pass-1")
        with pytest.raises(dataflows.DataFlowError, match="no partner"):
            dataflows.add(session, home_scope(session), "f2", source="mailbox:ghost", dest="vault")
        with pytest.raises(dataflows.DataFlowError, match="destination"):
            dataflows.add(session, home_scope(session), "f3", source="mailbox:acme", dest="nowhere")
