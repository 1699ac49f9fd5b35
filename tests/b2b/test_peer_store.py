"""The peer tables (migration 0012_peers), the replay guard and the audit of refused peer requests, on
the real databases: SQLite (what `tradelane up` uses by default) and a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel, col, func, select

from core import db
from core.b2b import keys, replay
from core.b2b.signing import PeerRefused
from core.db import session_scope
from core.models import AuditEvent, Peer, PeerNonce
from tests.isolation import isolated_home


@pytest.fixture(params=["sqlite", "postgres"])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    if url:
        # A fresh schema per test keeps PostgreSQL runs independent (as tests/test_store.py does).
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    with isolated_home(tmp_path, database_url=url) as path:
        db.init_db()
        yield path


def test_the_migration_creates_the_tables_the_models_describe(home: Path) -> None:
    engine = db.get_engine()
    with engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
        assert {"peer", "peer_nonce"} <= tables
        diffs = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    ours = [d for d in diffs if "peer" in repr(d)]
    assert ours == []
    with engine.connect() as connection:
        pk = inspect(connection).get_pk_constraint("peer_nonce")
    assert pk["constrained_columns"] == ["key_id", "nonce"]


def test_a_nonce_is_accepted_once(home: Path) -> None:
    assert replay.first_use("k_" + "1" * 32, "n" * 22)
    assert not replay.first_use("k_" + "1" * 32, "n" * 22)
    assert replay.first_use("k_" + "2" * 32, "n" * 22)  # per key


def test_of_many_concurrent_uses_of_a_nonce_one_wins(home: Path) -> None:
    results: list[bool] = []
    start = threading.Barrier(8)

    def use() -> None:
        start.wait()
        results.append(replay.first_use("k_" + "3" * 32, "same-nonce-0123456789ab"))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_prune_forgets_only_nonces_no_signature_can_carry_any_more(home: Path) -> None:
    now = datetime.now(UTC)
    with session_scope() as session:
        session.add(PeerNonce(key_id="k_a", nonce="old", seen_at=now - timedelta(seconds=331)))
        session.add(PeerNonce(key_id="k_a", nonce="recent", seen_at=now - timedelta(seconds=329)))
    assert replay.prune(now) == 1
    with session_scope() as session:
        assert [n.nonce for n in session.exec(select(PeerNonce))] == ["recent"]


def test_their_key_is_found_by_its_id_only_once_the_handshake_gave_it(home: Path) -> None:
    ours, theirs = keys.mint(), keys.mint()
    with session_scope() as session:
        peer = Peer(
            connection_id=7,
            base_url="https://b.example",
            our_key_id=ours.key_id,
            our_public_key=ours.public_key,
            our_private_key=ours.sealed_private_key,
        )
        session.add(peer)
    assert keys.their_key(theirs.key_id) is None

    with session_scope() as session:
        row = session.exec(select(Peer)).one()
        row.their_key_id, row.their_public_key = theirs.key_id, theirs.public_key
        row.their_connection_uid = "b-uid"
        session.add(row)
    found = keys.their_key(theirs.key_id)
    assert found is not None and found.connection_id == 7
    assert keys.public_key_text(found.public_key) == theirs.public_key
    assert keys.their_key(ours.key_id) is None  # our own key signs nothing we receive
    assert keys.their_key("k_' OR 1=1 --") is None

    with session_scope() as session:
        signer = keys.our_key(session.exec(select(Peer)).one())
    assert signer.their_connection_uid == "b-uid"
    assert keys.public_key_text(signer.private_key.public_key()) == ours.public_key


def test_refusals_are_audited_once_a_minute_per_key_and_reason(home: Path) -> None:
    audit = replay.RefusalAudit()
    bad = PeerRefused(401, "the request signature does not verify", "bad-signature")
    unknown = PeerRefused(401, "unknown key", "unknown-key")
    written = [
        audit.record(bad, key_id="k_" + "1" * 32, known=True, path="/p", remote_addr="10.0.0.1"),
        audit.record(bad, key_id="k_" + "1" * 32, known=True, path="/p", remote_addr="10.0.0.1"),
        audit.record(bad, key_id="k_" + "2" * 32, known=True, path="/p", remote_addr="10.0.0.1"),
        # Strangers' key ids are whatever they send: one bucket for all of them.
        audit.record(unknown, key_id="k_" + "8" * 32, known=False, path="/p", remote_addr="10.0.0.2"),
        audit.record(unknown, key_id="k_" + "9" * 32, known=False, path="/p", remote_addr="10.0.0.2"),
    ]
    assert written == [True, False, True, True, False]
    with session_scope() as session:
        rows = session.exec(
            select(AuditEvent).where(AuditEvent.action == "peer.refused").order_by(col(AuditEvent.id))
        ).all()
        assert session.exec(select(func.count()).select_from(AuditEvent)).one() == 3
    assert [(r.actor, r.detail["reason"], r.remote_addr) for r in rows] == [
        (f"peer-key:k_{'1' * 32}", "bad-signature", "10.0.0.1"),
        (f"peer-key:k_{'2' * 32}", "bad-signature", "10.0.0.1"),
        ("peer", "unknown-key", "10.0.0.2"),
    ]
