"""Peer key pairs (core/b2b/keys.py) and signed receipts (core/b2b/receipts.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.b2b import keys, receipts
from core.b2b.receipts import Expected, Receipt, ReceiptInvalid, SignedReceipt, TransferKey
from core.crypto import SecretKeyError
from core.models import Peer
from tests.isolation import isolated_home


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    with isolated_home(tmp_path) as path:
        yield path


def test_a_minted_key_is_sealed_with_the_instance_secret(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    minted = keys.mint()
    assert keys.KEY_ID_PATTERN.fullmatch(minted.key_id)
    private = keys.open_private_key(minted.sealed_private_key)
    assert keys.public_key_text(private.public_key()) == minted.public_key
    assert len(keys.from_b64url(minted.public_key, "key")) == 32

    raw = keys.b64url(private.private_bytes_raw())
    assert raw not in minted.sealed_private_key  # the private key is never stored in the clear
    assert raw not in base64.urlsafe_b64decode(minted.sealed_private_key + "==").decode("latin-1")

    monkeypatch.setenv("TRADELANE_SECRET_KEY", Fernet.generate_key().decode())
    from tests.isolation import clear_caches

    clear_caches()
    with pytest.raises(SecretKeyError):
        keys.open_private_key(minted.sealed_private_key)


def test_key_ids_are_unique_and_shaped() -> None:
    ids = {keys.new_key_id() for _ in range(100)}
    assert len(ids) == 100
    for key_id in ids:
        assert keys.check_key_id(key_id) == key_id
    for bad in ("k_" + "0" * 31, "K_" + "0" * 32, "k_" + "g" * 32, "", "k_" + "0" * 32 + "\n"):
        with pytest.raises(keys.BadKey):
            keys.check_key_id(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the public key must be 32 bytes (Ed25519), not 0"),
        (keys.b64url(b"x" * 31), "the public key must be 32 bytes (Ed25519), not 31"),
        ("not base64!", "the public key is not base64url"),
        ("A", "the public key is not base64url"),
    ],
)
def test_a_bad_public_key_is_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(keys.BadKey) as excinfo:
        keys.public_key(text)
    assert str(excinfo.value) == message


# --- receipts -------------------------------------------------------------------------------------

RECEIVER = Ed25519PrivateKey.generate()
RECEIVER_KEY = "k_" + "ab" * 16
KEY = TransferKey("b-uid", 91, "ab" * 32)


def receipt(**changes: object) -> Receipt:
    facts: dict[str, object] = {
        "connection": "b-uid",
        "peer_connection": "a-uid",
        "key": KEY.text(),
        "name": "po.json",
        "size": 1234,
        "sha256": "ab" * 32,
        "received_at": "2026-12-05T14:03:00+00:00",
        "receipt_id": 88,
    }
    facts.update(changes)
    return Receipt(**facts)  # type: ignore[arg-type]


SENT = Expected(key=KEY.text(), name="po.json", size=1234, sha256="ab" * 32)


def check(signed: SignedReceipt, expected: Expected = SENT) -> Receipt:
    return receipts.check(signed, key_id=RECEIVER_KEY, public_key=RECEIVER.public_key(), expected=expected)


def test_a_receipt_is_signed_over_its_exact_bytes_and_checks_out() -> None:
    signed = receipts.issue(receipt(), RECEIVER_KEY, RECEIVER)

    assert check(signed) == receipt()
    document = keys.from_b64url(signed.receipt, "receipt")
    assert document == (
        b'{"connection":"b-uid","key":"b-uid/91/' + b"ab" * 32 + b'","name":"po.json",'
        b'"peer_connection":"a-uid","receipt_id":88,"received_at":"2026-12-05T14:03:00+00:00",'
        b'"sha256":"' + b"ab" * 32 + b'","size":1234,"v":1}'
    )
    # Stored as three strings (as JSON, in transfer.destination_answer) and checked again later.
    stored = json.loads(json.dumps(receipts.stored_answer(signed, "globex")))
    assert stored["summary"] == "received by globex (signed receipt)"
    assert (
        receipts.verify(
            SignedReceipt.from_json(stored), key_id=RECEIVER_KEY, public_key=RECEIVER.public_key()
        )
        == receipt()
    )


def test_a_stored_answer_is_verified_with_the_key_on_the_peer_row() -> None:
    signed = receipts.issue(receipt(), RECEIVER_KEY, RECEIVER)
    stored = json.loads(json.dumps(receipts.stored_answer(signed, "globex")))
    peer = Peer(
        connection_id=1,
        base_url="https://b.example",
        our_key_id="k_" + "0" * 32,
        our_public_key="",
        our_private_key="",
        their_key_id=RECEIVER_KEY,
        their_public_key=keys.public_key_text(RECEIVER.public_key()),
    )
    assert receipts.verify_stored(stored, peer) == receipt()

    peer.their_public_key = keys.public_key_text(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ReceiptInvalid, match="signature does not verify"):
        receipts.verify_stored(stored, peer)
    peer.their_key_id = None
    with pytest.raises(ReceiptInvalid, match="never became active"):
        receipts.verify_stored(stored, peer)


def test_received_at_is_utc_to_the_second() -> None:
    moment = datetime(2026, 12, 5, 15, 3, 7, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert receipts.received_at_text(moment) == "2026-12-05T14:03:07+00:00"
    assert KEY.text() == "b-uid/91/" + "ab" * 32


def test_a_changed_receipt_does_not_verify() -> None:
    signed = receipts.issue(receipt(), RECEIVER_KEY, RECEIVER)
    changed = keys.b64url(receipt(size=1).document())
    with pytest.raises(ReceiptInvalid, match="signature does not verify"):
        check(SignedReceipt(changed, signed.signature, signed.key_id))


def test_a_receipt_signed_by_another_key_does_not_verify() -> None:
    signed = receipts.issue(receipt(), RECEIVER_KEY, Ed25519PrivateKey.generate())
    with pytest.raises(ReceiptInvalid, match="signature does not verify"):
        check(signed)
    other_id = receipts.issue(receipt(), "k_" + "cd" * 16, RECEIVER)
    with pytest.raises(ReceiptInvalid, match="signed with key"):
        check(other_id)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sha256": "cd" * 32}, "sha256"),
        ({"size": 1}, "size"),
        ({"name": "x"}, "name"),
        ({"key": "b/1/x"}, "key"),
    ],
)
def test_a_receipt_for_another_file_is_refused(changes: dict[str, object], field: str) -> None:
    signed = receipts.issue(receipt(**changes), RECEIVER_KEY, RECEIVER)
    with pytest.raises(ReceiptInvalid, match=f"the receipt states {field} "):
        check(signed)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"v":2}', "not a version 1 receipt"),
        (b'{"v":1,"extra":1}', "fields are not a receipt's"),
        (json.dumps({**json.loads(receipt().document()), "size": "1234"}).encode(), "size is not a int"),
    ],
)
def test_a_signed_document_that_is_no_receipt_is_refused(document: bytes, message: str) -> None:
    signed = SignedReceipt(keys.b64url(document), keys.sign(RECEIVER, document), RECEIVER_KEY)
    with pytest.raises(ReceiptInvalid, match=message):
        check(signed)


@pytest.mark.parametrize(
    "data",
    [None, [], {}, {"receipt": "x", "signature": "y"}, {"receipt": 1, "signature": "y", "key_id": "z"}],
)
def test_a_malformed_signed_receipt_is_refused(data: object) -> None:
    with pytest.raises(ReceiptInvalid):
        SignedReceipt.from_json(data)


def test_an_oversized_receipt_is_not_decoded() -> None:
    with pytest.raises(ReceiptInvalid, match="too large"):
        check(SignedReceipt("A" * (receipts.MAX_RECEIPT_CHARS + 1), "x", RECEIVER_KEY))
