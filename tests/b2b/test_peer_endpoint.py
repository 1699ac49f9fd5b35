"""The sending side's `peer` endpoint (core/endpoints/peer.py) through `core.delivery.push`, against the
real receiving routes under uvicorn: both ends of one cross-instance connection live in one home
here (each side has its own keys, so the protocol is the same as between two instances), which
makes the sender's answers to each kind of failure quick to check. The two-instance runs are in
tests/b2b/test_peerpush_up.py."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlmodel import select

from core import accounts, delivery
from core.b2b import outbox, receipts
from core.b2b.caller import cli_caller
from core.config import get_settings
from core.db import session_scope
from core.endpoints.base import Deferrable, EndpointError, PermissionDenied, TransientError
from core.endpoints.peer import PeerUnreachable
from core.models import Connection, ConnectionState, Peer, PeerUpload, Receipt
from tests.b2b import peer_pair
from tests.b2b.peer_site import Site, serve
from tests.servers import free_port


@dataclass
class Loop:
    """acme's sending connection and home's receiving one, paired through the site's API."""

    site: Site
    sending: peer_pair.Side
    receiving: peer_pair.Side

    def send(self, name: str, data: bytes) -> int:
        """Put a file into acme's outbox: its transfer by the push flow (not run: the test pushes)."""
        with session_scope() as session:
            caller = cli_caller(session, "acme")
        sent = outbox.write(caller, self.sending.connection_id, name, io.BytesIO(data))
        assert sent.transfer_id is not None
        return sent.transfer_id

    def point_at(self, url: str) -> None:
        with session_scope() as session:
            peer = session.exec(select(Peer).where(Peer.connection_id == self.sending.connection_id)).one()
            peer.base_url = url
            session.add(peer)

    def taken_in(self) -> list[Receipt]:
        with session_scope() as session:
            query = select(Receipt).where(Receipt.connection_id == self.receiving.connection_id)
            return list(session.exec(query).all())


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    for site in serve(tmp_path_factory.mktemp("peer-endpoint") / "home"):
        with session_scope() as session:
            accounts.add(session, "acme", email="admin@acme.example", password="Acme-Pass-2024x")
        sending = peer_pair.sender_begin("acme", "to-home", "orders", site.url)
        receiving = peer_pair.receiver_side(
            "home", "from-acme", "lake", "in", "http://a.invalid", sending, "acme"
        )
        peer_pair.sender_activate(sending.connection_id, receiving, "home", "from-acme")
        yield Loop(site, sending, receiving)


@pytest.fixture(autouse=True)
def _private_peers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRADELANE_PEER_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()  # the setting is read from the (cached) settings
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_push_sends_the_kept_file_and_returns_the_verified_signed_receipt(loop: Loop) -> None:
    data = os.urandom(2_500_000)
    transfer_id = loop.send("po.edi", data)
    done = delivery.push(delivery.load(transfer_id))
    assert done.uri == f"tradelane-peer://127.0.0.1/{loop.receiving.uid}/po.edi"
    with session_scope() as session:
        peer = session.exec(select(Peer).where(Peer.connection_id == loop.sending.connection_id)).one()
    facts = receipts.verify_stored(done.answer, peer)
    assert (facts.name, facts.size) == ("po.edi", len(data))
    assert facts.key == f"{loop.receiving.uid}/{transfer_id}/{facts.sha256}"
    # Again (a retry, a crash requeue): the receiver answers with the same receipt, takes nothing new.
    assert delivery.push(delivery.load(transfer_id), again=True).answer == done.answer
    assert [r.name for r in loop.taken_in()].count("po.edi") == 1


def test_a_peer_that_does_not_answer_is_deferrable(loop: Loop) -> None:
    transfer_id = loop.send("later.edi", b"later")
    loop.point_at(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(PeerUnreachable, match="cannot be reached") as raised:
            delivery.push(delivery.load(transfer_id))
    finally:
        loop.point_at(loop.site.url)
    assert isinstance(raised.value, Deferrable) and isinstance(raised.value, TransientError)
    assert delivery.error_kind(raised.value) == "unreachable"
    delivery.push(delivery.load(transfer_id))  # back: it goes through


def test_a_connection_cut_mid_body_is_resumed_by_the_next_try(loop: Loop) -> None:
    data = os.urandom(3_000_000)
    transfer_id = loop.send("big.bin", data)
    relay = peer_pair.Relay(int(loop.site.url.rsplit(":", 1)[1]))
    relay.cut_after(1_000_000)
    loop.point_at(relay.url)
    try:
        with pytest.raises(PeerUnreachable):
            delivery.push(delivery.load(transfer_id))
        delivery.push(delivery.load(transfer_id), again=True)
    finally:
        loop.point_at(loop.site.url)
        relay.close()
    with session_scope() as session:
        upload = session.exec(select(PeerUpload).where(PeerUpload.name == "big.bin")).one()
    assert upload.state == "complete" and upload.resumes == 1 and relay.cuts == 1
    assert [r.name for r in loop.taken_in()].count("big.bin") == 1


def test_a_revoked_receiver_is_final_not_retried(loop: Loop) -> None:
    transfer_id = loop.send("gone.edi", b"gone")
    with session_scope() as session:
        conn = session.get(Connection, loop.receiving.connection_id)
        assert conn is not None
        conn.state = ConnectionState.revoked
        session.add(conn)
    try:
        with pytest.raises(PermissionDenied, match="410") as raised:
            delivery.push(delivery.load(transfer_id))
        assert not raised.value.retryable
    finally:
        with session_scope() as session:
            conn = session.get(Connection, loop.receiving.connection_id)
            assert conn is not None
            conn.state = ConnectionState.active
            session.add(conn)


def test_a_kept_file_that_changed_is_not_sent(loop: Loop) -> None:
    transfer_id = loop.send("changed.edi", b"0123456789")
    job = delivery.load(transfer_id)
    kept = loop.site.home / "mailboxes" / job.source_path
    kept.write_bytes(b"01234")
    with pytest.raises(EndpointError, match="not the size it was made") as raised:
        delivery.push(job)
    assert not raised.value.retryable
    with session_scope() as session:
        assert session.exec(select(PeerUpload).where(PeerUpload.name == "changed.edi")).first() is None
