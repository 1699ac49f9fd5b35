"""Signed receipts: the receiving instance's word that it took a file in (DESIGN-12 §5.6), like an AS2 MDN.

The receipt is a small JSON document serialised once (sorted keys, compact, ASCII) and signed with
the receiver's Ed25519 key for the connection over exactly those bytes. It travels, and is stored by
the sender, as three strings - the document's bytes and the signature in base64url, and the key id -
so checking it years later needs no canonicalisation, only the receiver's public key (which the
sender's `peer` row keeps after a revoke).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.b2b.keys import BadKey, b64url, from_b64url, public_key, sign, verifies
from core.models import Peer

VERSION = 1
# A receipt is a few hundred bytes; anything much larger is not one (and is not decoded).
MAX_RECEIPT_CHARS = 8192


class ReceiptInvalid(ValueError):
    """A signed receipt that does not check out; the message says what is wrong."""


@dataclass(frozen=True)
class TransferKey:
    """What makes a push idempotent at the receiver (§5.5): a file the receiver took is never taken twice.

    `transfer_id` is the root of the sender's replay chain, so a crash-requeue, an in-run retry or
    Prefect's retry reuses it, while a deliberate second send is a new receipt and a new key.
    """

    connection_uid: str  # the receiver's connection uid
    transfer_id: int
    sha256: str

    def text(self) -> str:
        return f"{self.connection_uid}/{self.transfer_id}/{self.sha256}"


@dataclass(frozen=True)
class Receipt:
    """The facts a receipt states: the receiver took this file in for this connection."""

    connection: str  # the receiver's connection uid
    peer_connection: str  # the sender's connection uid
    key: str  # TransferKey.text()
    name: str
    size: int
    sha256: str
    received_at: str  # ISO 8601, UTC
    receipt_id: int  # the receiver's receipt id
    v: int = VERSION

    def document(self) -> bytes:
        """The exact bytes that are signed and stored."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return text.encode("ascii")


@dataclass(frozen=True)
class SignedReceipt:
    """A receipt as it travels and is stored: `{"receipt", "signature", "key_id"}`."""

    receipt: str  # base64url of Receipt.document()
    signature: str  # base64url Ed25519 signature over those bytes
    key_id: str

    def as_json(self) -> dict[str, str]:
        return {"receipt": self.receipt, "signature": self.signature, "key_id": self.key_id}

    @classmethod
    def from_json(cls, data: object) -> SignedReceipt:
        if not isinstance(data, dict):
            raise ReceiptInvalid("a signed receipt is an object with receipt, signature and key_id")
        values = [data.get(field) for field in ("receipt", "signature", "key_id")]
        if not all(isinstance(v, str) and v for v in values):
            raise ReceiptInvalid("a signed receipt needs receipt, signature and key_id, all strings")
        receipt, signature, key_id = (str(v) for v in values)
        return cls(receipt, signature, key_id)


def stored_answer(signed: SignedReceipt, receiver: str) -> dict[str, str]:
    """What the sender keeps in `transfer.destination_answer` (§5.5 step 4): a summary for people and
    the three strings that prove it. `SignedReceipt.from_json` reads it back."""
    return {"summary": f"received by {receiver} (signed receipt)", **signed.as_json()}


def verify_stored(answer: object, peer: Peer) -> Receipt:
    """Check a stored answer again with the receiver's key on `peer` (kept after a revoke), at any time."""
    if peer.their_key_id is None or peer.their_public_key is None:
        raise ReceiptInvalid("the peer's key is not known: the connection never became active")
    try:
        key = public_key(peer.their_public_key)
    except BadKey as exc:
        raise ReceiptInvalid(str(exc)) from None
    return verify(SignedReceipt.from_json(answer), key_id=peer.their_key_id, public_key=key)


def received_at_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def issue(receipt: Receipt, key_id: str, private_key: Ed25519PrivateKey) -> SignedReceipt:
    """The receiver signs a receipt with its key for the connection."""
    document = receipt.document()
    return SignedReceipt(b64url(document), sign(private_key, document), key_id)


@dataclass(frozen=True)
class Expected:
    """What the sender sent, which the receipt must state."""

    key: str
    name: str
    size: int
    sha256: str


def check(signed: SignedReceipt, *, key_id: str, public_key: Ed25519PublicKey, expected: Expected) -> Receipt:
    """The sender checks a receipt: signed by the receiver's key for this connection, over a document
    that states the file it sent. Returns the receipt's facts; ReceiptInvalid otherwise."""
    receipt = verify(signed, key_id=key_id, public_key=public_key)
    for field in ("key", "name", "size", "sha256"):
        stated, sent = getattr(receipt, field), getattr(expected, field)
        if stated != sent:
            raise ReceiptInvalid(f"the receipt states {field} {stated!r}, but {sent!r} was sent")
    return receipt


def verify(signed: SignedReceipt, *, key_id: str, public_key: Ed25519PublicKey) -> Receipt:
    """A stored receipt's facts, after its signature checked out with the receiver's key."""
    if signed.key_id != key_id:
        named = signed.key_id[:40]
        raise ReceiptInvalid(f"the receipt is signed with key {named!r}, not the peer's {key_id}")
    if len(signed.receipt) > MAX_RECEIPT_CHARS or len(signed.signature) > 200:
        raise ReceiptInvalid("the receipt is too large to be one")
    try:
        document = from_b64url(signed.receipt, "the receipt")
    except BadKey as exc:
        raise ReceiptInvalid(str(exc)) from None
    if not verifies(public_key, document, signed.signature):
        raise ReceiptInvalid("the receipt's signature does not verify with the peer's key")
    return _facts(document)


def _facts(document: bytes) -> Receipt:
    try:
        data: Any = json.loads(document)
    except ValueError:
        raise ReceiptInvalid("the signed receipt is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise ReceiptInvalid(f"not a version {VERSION} receipt")
    try:
        receipt = Receipt(**data)
    except TypeError:
        raise ReceiptInvalid("the signed receipt's fields are not a receipt's") from None
    types = {"size": int, "receipt_id": int}
    for field, value in asdict(receipt).items():
        want = types.get(field, int if field == "v" else str)
        if type(value) is not want:
            raise ReceiptInvalid(f"the receipt's {field} is not a {want.__name__}")
    return receipt
