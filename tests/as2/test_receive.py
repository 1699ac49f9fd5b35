"""Receiving AS2 at POST /as2/receive: the conformance rows, one test each, over real HTTP."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlmodel import select

from core import partners
from core.as2.settings import MIB
from core.db import session_scope
from core.models import Receipt
from tests.as2.conftest import As2Server, Trading
from tests.as2.peer import Identity, PeerServer, compressed_after_signing, judge_mdn, post, wire
from tests.tenancy import home_scope
from tests.waiting import wait_for

MDN_SIGNED = "sha256"


def send(
    server: As2Server,
    partner: Trading,
    data: bytes,
    filename: str = "order.edi",
    *,
    mdn: str | None = None,
    mdn_sign: str | None = None,
    mdn_url: str | None = None,
    **options: Any,
) -> tuple[httpx.Response, Any]:
    """Build a message from `partner` to us with pyas2lib (options: sign/digest_alg/encrypt/...)."""
    message = partner.message(
        mdn_url=mdn_url, mdn_mode={"sync": "SYNC", "async": "ASYNC"}.get(mdn or ""), mdn_digest_alg=mdn_sign,
        **options,
    )  # fmt: skip
    message.build(data, filename=filename, content_type="application/octet-stream")
    headers, body = wire(message)
    return post(server.receive_url, headers, body), message


def delivered(partner: Trading, name: str) -> bytes:
    return (partner.upload / name).read_bytes()


def receipts(partner: Trading) -> list[Receipt]:
    with session_scope() as session:
        return list(
            session.exec(select(Receipt).where(Receipt.protocol == "as2", Receipt.folder == "upload"))
        )


# ---- positive rows ----------------------------------------------------------------------------


def test_plain(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(allow_unsigned=True)
    response, message = send(as2_server, partner, b"ISA*00*plain~", "plain.x12")
    assert response.status_code == 200, response.text
    assert delivered(partner, "plain.x12") == b"ISA*00*plain~"
    [row] = partner.rows()
    assert (row.status, row.message_id, row.signed, row.encrypted) == (
        "received",
        message.message_id,
        False,
        False,
    )
    assert row.receipt_id is not None and row.mdn_mode == "none"


def test_plain_with_unsigned_sync_mdn(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(allow_unsigned=True)
    response, message = send(as2_server, partner, b"hello", "hello.txt", mdn="sync")
    status, detail, mdn = judge_mdn(response, message)
    assert (status, detail) == ("processed", None)
    assert response.headers["content-type"].startswith("multipart/report")
    assert mdn.digest_alg is None  # unsigned
    assert delivered(partner, "hello.txt") == b"hello"


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha384", "sha512"])
def test_signed_with_signed_mdn(as2_server: As2Server, trading: Callable[..., Trading], digest: str) -> None:
    partner = trading(sign=digest)
    data = f"signed with {digest}\r\n".encode() * 50
    response, message = send(
        as2_server, partner, data, "signed.edi", mdn="sync", mdn_sign=MDN_SIGNED, sign=True, digest_alg=digest
    )
    status, detail, mdn = judge_mdn(response, message)  # verifies the MDN's signature and our MIC
    assert (status, detail) == ("processed", None)
    assert response.headers["content-type"].startswith("multipart/signed")
    assert mdn.digest_alg == MDN_SIGNED
    assert delivered(partner, "signed.edi") == data
    [row] = partner.rows()
    assert row.signed and row.mic == message.mic.decode() and row.mic_alg == digest and row.mdn_signed


@pytest.mark.parametrize(
    ("cipher", "pyas2lib_cipher"),
    [
        ("3des", "tripledes_192_cbc"),
        ("aes128", "aes_128_cbc"),
        ("aes192", "aes_192_cbc"),
        ("aes256", "aes_256_cbc"),
    ],
)
def test_encrypted(
    as2_server: As2Server, trading: Callable[..., Trading], cipher: str, pyas2lib_cipher: str
) -> None:
    partner = trading(encrypt=cipher, allow_unsigned=True)
    data = os.urandom(3000)
    response, message = send(
        as2_server, partner, data, "enc.bin", mdn="sync", encrypt=True, enc_alg=pyas2lib_cipher
    )
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert delivered(partner, "enc.bin") == data
    assert partner.rows()[0].encrypted


def test_signed_and_encrypted(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(sign="sha256", encrypt="aes256")
    response, message = send(
        as2_server, partner, b"both", "both.edi", mdn="sync", mdn_sign="sha256",
        sign=True, encrypt=True, enc_alg="aes_256_cbc",
    )  # fmt: skip
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert delivered(partner, "both.edi") == b"both"


def test_compressed_before_signing(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(sign="sha256", encrypt="aes128")
    data = b"compress me " * 5000
    response, message = send(
        as2_server, partner, data, "zipped-first.edi", mdn="sync", mdn_sign="sha256",
        sign=True, encrypt=True, enc_alg="aes_128_cbc", compress=True,
    )  # fmt: skip
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert delivered(partner, "zipped-first.edi") == data
    row = partner.rows()[0]
    assert (row.signed, row.encrypted, row.compressed) == (True, True, True)


def test_compressed_after_signing(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(sign="sha256", encrypt="aes256")
    data = b"sign, then compress " * 3000
    receiver = partner.message(mdn_mode="SYNC", mdn_digest_alg="sha256", sign=True).receiver
    message = compressed_after_signing(
        partner.ident.organization(), receiver, data, "zipped-after.edi", "aes_256_cbc"
    )
    headers, body = wire(message)
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert delivered(partner, "zipped-after.edi") == data
    assert partner.rows()[0].compressed


def test_async_mdn(as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer) -> None:
    """The MDN goes to the sender's Receipt-Delivery-Option URL (here the peer server), signed,
    when the profile's allow-list takes that URL."""
    partner = trading(sign="sha256", encrypt="aes256", allow_mdn_urls=[peer.url])
    response, message = send(
        as2_server, partner, b"async please", "async.edi", mdn="async", mdn_sign="sha256",
        mdn_url=peer.url, sign=True, encrypt=True, enc_alg="aes_256_cbc",
    )  # fmt: skip
    assert response.status_code == 200 and response.content == b""
    assert delivered(partner, "async.edi") == b"async please"
    assert wait_for(lambda: peer.received), "no async MDN arrived"
    mdn_post = peer.received[0]
    raw = (
        b"".join(f"{k}: {v}\r\n".encode() for k, v in mdn_post.headers.items()) + b"\r\n" + mdn_post.raw_body
    )
    import pyas2lib

    mdn = pyas2lib.Mdn()
    assert mdn.parse(raw, lambda mid, _r: message if mid == message.message_id else None) == (
        "processed",
        None,
    )
    row = wait_for(lambda: next((r for r in partner.rows() if r.mdn_status == "sent"), None))
    assert row and row.mdn_mode == "async" and row.attempts == 1


def test_async_mdn_is_retried(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    """An MDN URL that fails at first is tried again (pauses double from TRADELANE_AS2_MDN_RETRY_SECONDS)."""
    partner = trading(sign="sha256")  # the default allow-list: the origin of the profile's URL
    response, _ = send(
        as2_server, partner, b"x", "retry.edi", mdn="async", mdn_url="http://127.0.0.1:9/mdn", sign=True
    )
    assert response.status_code == 200
    row = wait_for(lambda: next((r for r in partner.rows() if r.attempts >= 2), None))
    assert row is not None and row.mdn_status == "pending" and "refused" in (row.error or "refused")


def test_binary_payload_is_byte_exact(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(sign="sha512", encrypt="aes192")
    data = bytes(range(256)) * 64 + b"\r\n\n\r\x00--boundary--\r\n" + os.urandom(50_000)
    response, message = send(
        as2_server, partner, data, "blob.bin", mdn="sync", mdn_sign="sha256",
        sign=True, digest_alg="sha512", encrypt=True, enc_alg="aes_192_cbc", compress=True,
    )  # fmt: skip
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert delivered(partner, "blob.bin") == data


def test_duplicate_message_id_is_acknowledged_once(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    partner = trading(sign="sha256")
    message = partner.message(mdn_mode="SYNC", mdn_digest_alg="sha256", sign=True)
    message.build(b"only once", filename="dup.edi", content_type="application/octet-stream")
    headers, body = wire(message)
    first = post(as2_server.receive_url, headers, body)
    second = post(as2_server.receive_url, headers, body)
    assert judge_mdn(first, message)[:2] == ("processed", None)
    status, detail, _ = judge_mdn(second, message)
    assert (status, detail) == ("processed/Warning", "duplicate-document")
    assert sorted(p.name for p in partner.upload.iterdir()) == ["dup.edi"]
    [row] = partner.rows()
    assert row.status == "received"
    assert len([r for r in receipts(partner) if r.name == "dup.edi"]) == 1


def test_same_file_name_twice_keeps_both(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(allow_unsigned=True)
    send(as2_server, partner, b"first", "same.edi")
    send(as2_server, partner, b"second", "same.edi")
    contents = sorted(p.read_bytes() for p in partner.upload.iterdir())
    assert contents == [b"first", b"second"]


def test_a_message_not_taken_in_is_taken_in_when_sent_again(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    """Refused while its mailbox was disabled, the same message (same Message-ID) sent again once
    it is enabled is taken in, and its one row says so with what the first try could not record."""
    partner = trading(sign="sha256")
    message = partner.message(mdn_mode="SYNC", mdn_digest_alg=MDN_SIGNED, sign=True)
    message.build(b"ISA*00*again~", filename="again.x12", content_type="application/octet-stream")
    headers, body = wire(message)
    _mailbox_enabled(partner, False)
    first = post(as2_server.receive_url, headers, body)
    assert judge_mdn(first, message)[0] == "processed/Error"
    [row] = partner.rows()
    assert (row.status, row.receipt_id, row.signed_digest) == ("failed", None, None)

    _mailbox_enabled(partner, True)
    second = post(as2_server.receive_url, headers, body)
    assert judge_mdn(second, message)[:2] == ("processed", None)
    assert delivered(partner, "again.x12") == b"ISA*00*again~"
    [again] = partner.rows()
    assert again.id == row.id and again.message_id == message.message_id
    assert (again.status, again.disposition, again.error) == ("received", "processed", None)
    assert again.receipt_id is not None and again.signed_digest and again.sha256
    assert (again.mdn_mode, again.mdn_status, again.mdn_signed) == ("sync", "sent", True)


def _mailbox_enabled(partner: Trading, enabled: bool) -> None:
    with session_scope() as session:
        scope = home_scope(session)
        partners.configure(session, scope, partners.require(session, scope, partner.mailbox), enabled=enabled)


# ---- negative rows: each answers with its disposition, never a 500 ----------------------------


def negative(response: httpx.Response, message: Any) -> tuple[str | None, str | None]:
    assert response.status_code == 200, response.text
    return judge_mdn(response, message)[:2]


def test_wrong_key(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    """Encrypted for a certificate that is not ours: decryption-failed."""
    partner = trading(encrypt="aes256")
    stranger = Identity.new("SOMEONE-ELSE")
    message = partner.message(mdn_mode="SYNC", encrypt=True, enc_alg="aes_256_cbc")
    message.receiver.encrypt_cert = stranger.cert_pem.encode()
    message.build(b"not for you", filename="x.edi")
    response = post(as2_server.receive_url, *wire(message))
    assert negative(response, message) == ("processed/Error", "decryption-failed")
    assert not partner.upload.exists() or not any(partner.upload.iterdir())
    assert partner.rows()[0].status == "failed"


def test_bad_signature(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    """Signed by a key that is not the one in the partner's profile: authentication-failed."""
    partner = trading(sign="sha256")
    impostor = Identity.new(partner.as2_id)
    message = partner.message(mdn_mode="SYNC", sign=True)
    message.sender = impostor.organization()
    message.build(b"forged", filename="forged.edi")
    response = post(as2_server.receive_url, *wire(message))
    assert negative(response, message) == ("processed/Error", "authentication-failed")


def test_tampered_signed_content(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(sign="sha256")
    message = partner.message(mdn_mode="SYNC", sign=True)
    message.build(b"amount=100", filename="t.edi", content_type="application/octet-stream")
    headers, body = wire(message)
    response = post(as2_server.receive_url, headers, body.replace(b"amount=100", b"amount=999"))
    assert negative(response, message) == ("processed/Error", "authentication-failed")


@pytest.mark.parametrize("required", ["encrypt", "sign"])
def test_missing_required_security(
    as2_server: As2Server, trading: Callable[..., Trading], required: str
) -> None:
    partner = trading(**{required: "aes256" if required == "encrypt" else "sha256"})
    response, message = send(as2_server, partner, b"naked", "naked.edi", mdn="sync")
    assert negative(response, message) == ("processed/Error", "insufficient-message-security")
    assert not any(partner.upload.iterdir())


def test_unknown_partner(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    """Refused from the headers alone (see tests/hostile/test_as2sec_unknown_sender.py), with
    the disposition named, even when a sync MDN was asked for."""
    partner = trading()
    stranger = Identity.new("NOBODY-WE-KNOW")
    message = partner.message(mdn_mode="SYNC", mdn_digest_alg="sha256")
    message.sender = stranger.organization()
    message.build(b"hi", filename="hi.edi")
    response = post(as2_server.receive_url, *wire(message))
    assert response.status_code == 403 and "unknown-trading-partner" in response.text
    assert "NOBODY-WE-KNOW" in response.text


def test_unknown_partner_without_mdn(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading()
    message = partner.message()
    message.sender = Identity.new("NOBODY-2").organization()
    message.build(b"hi", filename="hi.edi")
    response = post(as2_server.receive_url, *wire(message))
    assert response.status_code == 403 and "unknown-trading-partner" in response.text


def test_corrupted_encrypted_body(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(encrypt="3des")
    message = partner.message(mdn_mode="SYNC", encrypt=True)
    message.build(os.urandom(5000), filename="c.bin")
    headers, body = wire(message)
    for corrupted in (body[: len(body) // 2], body[:40] + os.urandom(len(body) - 40), b"\x00garbage"):
        response = post(as2_server.receive_url, headers, corrupted)
        assert negative(response, message) == ("processed/Error", "decryption-failed")


def test_corrupted_compressed_body(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading()
    message = partner.message(mdn_mode="SYNC", compress=True)
    message.build(b"z" * 10000, filename="z.edi")
    headers, body = wire(message)
    response = post(as2_server.receive_url, headers, body[:30] + b"\xff" * 20 + body[50:])
    assert negative(response, message) == ("processed/Error", "decompression-failed")


def test_garbage_without_as2_headers(as2_server: As2Server) -> None:
    response = httpx.post(
        as2_server.receive_url, content=b"\x00\x01 not AS2", headers={"Content-Type": "x/y"}
    )
    assert response.status_code == 400
    assert "unexpected-processing-error" in response.text


@pytest.mark.parametrize("cap", [MIB, 64 * 1024], ids=["spooled", "in-memory"])
def test_message_over_the_size_limit(
    as2_server: As2Server, trading: Callable[..., Trading], monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    """Refused with 413 from its Content-Length, and while streaming without one: a cap of 1 MiB
    is passed in the spool file, one under it (64 KiB) while the body is still gathered in memory."""
    monkeypatch.setenv("TRADELANE_AS2_MAX_MESSAGE_BYTES", str(cap))
    partner = trading()
    message = partner.message(mdn_mode="SYNC")
    message.build(os.urandom(cap + 10), filename="big.bin", content_type="application/octet-stream")
    headers, body = wire(message)
    response = post(as2_server.receive_url, headers, body)
    assert response.status_code == 413
    assert "TRADELANE_AS2_MAX_MESSAGE_BYTES" in response.json()["message"]

    def chunks() -> Any:  # no Content-Length: the cap is enforced while streaming
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    response = httpx.post(as2_server.receive_url, headers=headers, content=chunks(), timeout=60)
    assert response.status_code == 413
    assert not any(partner.upload.iterdir())


def test_probe(as2_server: As2Server) -> None:
    assert "POST AS2 messages" in httpx.get(as2_server.receive_url).text


def test_a_sender_checked_on_its_headers_is_looked_up_again_when_the_check_is_old(
    as2_home: object, trading: Callable[..., Trading]
) -> None:
    """receive() reuses the pair check_sender found on the headers (one query less per message)
    only for KNOWN_FOR_SECONDS: a profile disabled while a message arrived is seen after that."""
    import dataclasses
    import time

    from core.as2 import receive as inbound
    from core.models import As2Partner

    partner = trading(sign="sha256")

    def message(name: str) -> tuple[dict[str, str], bytes]:
        built = partner.message(mdn_mode="SYNC", sign=True, digest_alg="sha256")
        built.build(os.urandom(2048), filename=name, content_type="application/octet-stream")
        return wire(built)

    (fresh_headers, fresh_body), (old_headers, old_body) = message("fresh.bin"), message("old.bin")
    fresh, old = inbound.check_sender(fresh_headers.items()), inbound.check_sender(old_headers.items())
    assert isinstance(fresh, inbound.Sender) and isinstance(old, inbound.Sender)
    old = dataclasses.replace(old, at=time.monotonic() - inbound.KNOWN_FOR_SECONDS - 1)
    with session_scope() as session:
        profile = session.exec(select(As2Partner).where(As2Partner.as2_id == partner.as2_id)).one()
        profile.enabled = False
        session.add(profile)

    taken = inbound.receive(list(fresh_headers.items()), fresh_body, "127.0.0.1", fresh)
    assert taken.status_code == 200 and b"processed" in taken.body and b"Error" not in taken.body
    refused = inbound.receive(list(old_headers.items()), old_body, "127.0.0.1", old)
    assert b"unknown-trading-partner" in refused.body
    assert sorted(p.name for p in partner.upload.iterdir()) == ["fresh.bin"]
    assert inbound.check_sender(fresh_headers.items()).status_code == 403  # and new ones are refused


def test_a_message_for_a_disabled_mailbox_is_refused(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    """The profile's mailbox partner is loaded with the profile (one query) and its standing is
    still checked: disabled, the message is answered with an error MDN and lands nowhere."""
    from core import partners
    from core.tenancy import scope_for_cli

    partner = trading(sign="sha256")
    with session_scope() as session:
        scope = scope_for_cli(session, "home")
        partners.configure(session, scope, partners.require(session, scope, partner.mailbox), enabled=False)
    message = partner.message(mdn_mode="SYNC", sign=True, digest_alg="sha256")
    message.build(b"for a disabled mailbox", filename="off.edi")
    response = post(as2_server.receive_url, *wire(message))
    assert negative(response, message) == ("processed/Error", "unexpected-processing-error")
    assert "no longer exists" in (partner.rows()[0].error or "")
    assert not partner.upload.exists() or not any(partner.upload.iterdir())
