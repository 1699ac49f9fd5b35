"""Sending AS2 through the `as2` endpoint to a peer AS2 server on loopback."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import pytest
from sqlmodel import select

from core import dataflows, delivery, intake, partners
from core.as2.settings import MIB
from core.db import session_scope
from core.endpoints import rows as endpoint_rows
from core.endpoints.as2 import As2Endpoint
from core.endpoints.base import ConfigError, EndpointError, PermissionDenied, TransientError, WriteStream
from core.models import As2Message, Transfer, TransferState
from tests.as2.conftest import As2Server, Trading
from tests.as2.peer import Identity, PeerServer
from tests.tenancy import home_scope
from tests.waiting import wait_for


def row_of(message_id: str) -> As2Message:
    with session_scope() as session:
        row = session.exec(select(As2Message).where(As2Message.message_id == message_id)).one()
        return row


def push(partner: str, name: str, data: bytes) -> tuple[As2Endpoint, WriteStream]:
    endpoint = As2Endpoint({"partner": partner})
    with endpoint.open_write(name) as out:
        for i in range(0, len(data), 65536):
            out.write(data[i : i + 65536])
    return endpoint, out


def test_sync_signed_mdn_signed_encrypted_compressed(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer
) -> None:
    trading(
        peer.me, url=peer.url, sign="sha256", encrypt="aes256", compress=True, mdn="sync", mdn_sign="sha256"
    )
    data = bytes(range(256)) * 100 + b"\r\n\n" + os.urandom(10_000)
    endpoint, sent = push(peer.me.as2_id, "out/po_850.bin", data)
    [got] = peer.received
    assert (got.status, got.payload, got.filename) == ("processed", data, "po_850.bin")
    row = row_of(got.message_id)
    assert row.status == "acknowledged" and row.disposition == "processed"
    assert row.signed and row.encrypted and row.compressed and row.mdn_signed
    assert row.mic and row.mic_alg == "sha256" and row.mdn and "Received-content-MIC" in row.mdn
    assert endpoint.uri("out/po_850.bin") == f"as2:{peer.me.as2_id}/out/po_850.bin#{got.message_id}"
    assert sent.answer is not None  # kept with the transfer
    assert sent.answer["summary"] == f"AS2 {got.message_id}: acknowledged; MDN processed"
    assert sent.answer["mic"] == row.mic


@pytest.mark.parametrize(("sign", "encrypt"), [("sha1", "3des"), ("sha384", "aes128"), ("sha512", "aes192")])
def test_each_digest_and_cipher(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer, sign: str, encrypt: str
) -> None:
    trading(peer.me, url=peer.url, sign=sign, encrypt=encrypt, mdn="sync", mdn_sign="sha256")
    push(peer.me.as2_id, "x.edi", b"ISA*00~")
    assert row_of(peer.received[0].message_id).status == "acknowledged"


def test_plain_without_mdn(as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer) -> None:
    trading(peer.me, url=peer.url, mdn="none")
    push(peer.me.as2_id, "plain.txt", b"plain")
    [got] = peer.received
    assert got.payload == b"plain"
    assert row_of(got.message_id).status == "sent"


def test_async_mdn_closes_the_message(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer
) -> None:
    trading(peer.me, url=peer.url, sign="sha256", encrypt="aes128", mdn="async", mdn_sign="sha256")
    push(peer.me.as2_id, "async.edi", b"async")
    message_id = peer.received[0].message_id
    row = wait_for(lambda: (r := row_of(message_id)).status == "acknowledged" and r)
    assert row and row.mdn_mode == "async" and row.mdn_signed and row.disposition == "processed"
    assert row.spool_path is None  # the message kept for resends is gone


def _flow_to(peer_as2_id: str, tag: str) -> tuple[str, int]:
    """A mailbox partner, an as2 endpoint and a data flow between them; returns (mailbox, flow id)."""
    mailbox = f"as2-src-{tag}-{os.urandom(3).hex()}"
    with session_scope() as session:
        partners.add(session, home_scope(session), mailbox, password="pw-" + os.urandom(8).hex())
        endpoint_rows.add(session, home_scope(session), f"to-{mailbox}", "as2", {"partner": peer_as2_id})
        flow = dataflows.add(
            session, home_scope(session), f"flow-{mailbox}", source=f"mailbox:{mailbox}", dest=f"to-{mailbox}"
        )
        assert flow.id is not None
        return mailbox, flow.id


def _deliver(mailbox: str, name: str, data: bytes) -> int:
    """Upload into the mailbox and run the transfer's push the way the flow's push task does."""
    with session_scope() as session:
        partner = partners.require(session, home_scope(session), mailbox)
    receipt = intake.receive_stream(partner, "upload", name, io.BytesIO(data), protocol="rest")
    with session_scope() as session:
        transfer = session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id)).one()
    assert transfer.id is not None
    (job,) = delivery.start([transfer.id])  # running, as the flow's start task leaves it
    delivery.record_outcomes([delivery.Outcome.delivered(job, delivery.push(job))])
    return transfer.id


def test_async_mdn_timeout_resends_with_the_same_message_id(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer
) -> None:
    trading(peer.me, url=peer.url, sign="sha256", mdn="async", mdn_timeout_seconds=0.5, max_resends=3)
    peer.drop_async_mdns = 1  # the first MDN is "lost"
    mailbox, _ = _flow_to(peer.me.as2_id, "resend")
    transfer_id = _deliver(mailbox, "resend.edi", b"resend me")
    assert wait_for(lambda: len(peer.received) >= 2), "no resend"
    first, second = peer.received[:2]
    assert first.message_id == second.message_id and second.payload == b"resend me"
    row = wait_for(lambda: (r := row_of(first.message_id)).status == "acknowledged" and r)
    assert row and row.attempts == 2
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None and transfer.state == TransferState.delivered
        assert transfer.destination_uri == row.destination_uri


def test_async_mdn_never_comes_fails_visibly(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer
) -> None:
    trading(peer.me, url=peer.url, mdn="async", mdn_timeout_seconds=0.3, max_resends=2)
    peer.drop_async_mdns = 99
    mailbox, _ = _flow_to(peer.me.as2_id, "never")
    transfer_id = _deliver(mailbox, "never.edi", b"into the void")
    message_id = wait_for(lambda: peer.received and peer.received[0].message_id)
    row = wait_for(lambda: (r := row_of(message_id)).status == "failed" and r, timeout=20)
    assert row and row.attempts == 3 and "no MDN" in (row.error or "")
    assert {r.message_id for r in peer.received} == {message_id} and len(peer.received) == 3
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None and transfer.state == TransferState.failed
        assert "no MDN" in (transfer.error or "")
        assert row_of(message_id).transfer_id == transfer_id


def test_negative_mdn_is_an_error(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer
) -> None:
    """We encrypt for a certificate the peer has no key for: its MDN says decryption-failed."""
    trading(Identity.new(peer.me.as2_id), url=peer.url, encrypt="aes256", mdn="sync")
    with pytest.raises(EndpointError, match="decryption-failed") as info:
        push(peer.me.as2_id, "x.edi", b"x")
    assert not info.value.retryable
    row = row_of(peer.received[0].message_id)
    assert row.status == "failed" and row.disposition == "processed/Error: decryption-failed"


def test_forged_mdn_signature_is_an_error(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer
) -> None:
    trading(peer.me, url=peer.url, sign="sha256", mdn="sync", mdn_sign="sha256")
    peer.mdn_sign_identity = Identity.new("FORGER")
    with pytest.raises(EndpointError, match="did not accept"):
        push(peer.me.as2_id, "x.edi", b"x")
    assert row_of(peer.received[0].message_id).status == "failed"


def test_unsigned_mdn_when_signed_was_asked(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer
) -> None:
    trading(peer.me, url=peer.url, mdn="sync", mdn_sign="sha256")
    peer.sign_mdns = False
    with pytest.raises(EndpointError, match="Expected signed MDN") as info:
        push(peer.me.as2_id, "x.edi", b"x")
    assert not isinstance(info.value, TransientError)
    assert peer.received[0].status == "processed"


def test_partner_down_is_transient(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(url="http://127.0.0.1:9/as2", mdn="sync")
    with pytest.raises(TransientError):
        push(partner.as2_id, "x.edi", b"x")


def test_too_large_to_send(
    as2_server: As2Server, trading: Callable[..., Trading], monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = trading()
    monkeypatch.setenv("TRADELANE_AS2_MAX_MESSAGE_BYTES", str(MIB))
    with pytest.raises(ConfigError, match="TRADELANE_AS2_MAX_MESSAGE_BYTES"):
        push(partner.as2_id, "big.bin", os.urandom(MIB + 1))


def test_send_only_endpoint(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading()
    endpoint = As2Endpoint({"partner": partner.as2_id})
    assert list(endpoint.list("")) == []
    with pytest.raises(PermissionDenied):
        endpoint.open_read("x")
    with pytest.raises(ConfigError):
        As2Endpoint({})
    with pytest.raises(ConfigError, match="no AS2 partner"):
        push("NOT-A-PARTNER", "x", b"x")
