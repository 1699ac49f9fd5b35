"""The peer worker's sweep in-process, against a real store: nonce pruning, expiry written with its
audit row, a revoke notice to an instance that does not answer rescheduled 5 s, 10 s ... apart, and a
state check without an answer marking the peer unreachable (never revoked). The two-instance tests
(tests/b2b/test_peers_up.py) show the same worker delivering notices and checks between real `up`s.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import select

from core.b2b import connections, keys, worker
from core.b2b.caller import cli_caller
from core.db import session_scope
from core.models import AuditEvent, Connection, ConnectionState, Peer, PeerNonce, utcnow
from tests.b2b.helpers import run_json
from tests.isolation import clear_caches
from tests.servers import free_port


@pytest.fixture
def home(b2b: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRADELANE_PEER_ALLOW_PRIVATE", "true")
    clear_caches()
    yield
    clear_caches()


def far_connection() -> tuple[int, int]:
    """A connection of `home` sending to an instance at a port where nothing listens: (id, peer id)."""
    minted, theirs = keys.mint(), keys.mint()
    with session_scope() as session:
        home = cli_caller(session, "home")
        conn = Connection(
            direction="send",
            state=ConnectionState.active,
            sender_account_id=home.account_id,
            sender_name="to-far",
            outbox_name="far",
            receiver_name="from-home",
        )
        session.add(conn)
        session.flush()
        assert conn.id is not None
        peer = Peer(
            connection_id=conn.id,
            base_url=f"http://127.0.0.1:{free_port()}",
            their_connection_uid="6f1b2d2e-7a44-4a3e-9b54-4a8f0f1d2c3b",
            their_account="far",
            their_key_id=theirs.key_id,
            their_public_key=theirs.public_key,
            our_key_id=minted.key_id,
            our_public_key=minted.public_key,
            our_private_key=minted.sealed_private_key,
        )
        session.add(peer)
        session.flush()
        assert peer.id is not None
        return conn.id, peer.id


def test_a_sweep_prunes_old_nonces_and_writes_expiries(home: None) -> None:
    invited = run_json(
        "connect", "invite", "--email", "e@x.example", "--name", "late", "--send", "--outbox", "l"
    )
    with session_scope() as session:
        session.add(
            PeerNonce(key_id="k_" + "1" * 32, nonce="a" * 22, seen_at=utcnow() - timedelta(seconds=400))
        )
        session.add(PeerNonce(key_id="k_" + "1" * 32, nonce="b" * 22))
        conn = session.get(Connection, invited["id"])
        assert conn is not None
        conn.token_expires_at = utcnow() - timedelta(seconds=1)
        session.add(conn)
    worker.Sweeper().sweep()
    with session_scope() as session:
        assert [n.nonce for n in session.exec(select(PeerNonce))] == ["b" * 22]
        conn = session.get(Connection, invited["id"])
        assert conn is not None and conn.state == ConnectionState.expired
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "connection.expire")).all()
        assert [e.target for e in events] == [f"connection:{invited['id']}"]


def test_a_revoke_notice_nobody_answers_is_retried_later_and_later(home: None) -> None:
    _, peer_id = far_connection()
    with session_scope() as session:
        connections.revoke(session, cli_caller(session, "home"), "to-far")
    assert worker.due_notices() == [peer_id]
    delays = []
    for _ in range(3):
        before = utcnow()
        assert worker.send_notice(peer_id) is False
        with session_scope() as session:
            peer = session.get(Peer, peer_id)
            assert peer is not None and peer.revoke_to_send and peer.next_notice_at is not None
            assert peer.last_error is not None and "did not answer" in peer.last_error
            delays.append(round((connections._aware(peer.next_notice_at) - before).total_seconds()))
    assert delays == [5, 10, 20]
    assert worker.due_notices() == []  # not before its time


def test_a_state_check_without_an_answer_marks_the_peer_unreachable(home: None) -> None:
    conn_id, peer_id = far_connection()
    assert worker.due_checks() == [peer_id]
    assert worker.check(peer_id) is None
    with session_scope() as session:
        peer = session.get(Peer, peer_id)
        conn = session.get(Connection, conn_id)
        assert peer is not None and conn is not None
        assert (
            not peer.reachable and peer.unreachable_since is not None and conn.state == ConnectionState.active
        )
        assert peer.next_check_at is not None
        actions = [
            e.action for e in session.exec(select(AuditEvent).where(AuditEvent.action == "peer.unreachable"))
        ]
    assert actions == ["peer.unreachable"]
    assert worker.due_checks() == []  # next in TRADELANE_PEER_CHECK_SECONDS
