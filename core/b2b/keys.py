"""Ed25519 key pairs minted for one cross-instance connection (DESIGN-12 §5.1).

Each side of a connection has its own pair. Public keys travel as the raw 32 bytes in unpadded
base64url; our private key is stored sealed with the instance's secret key (core/crypto.py, as
every other secret) and opened only in memory, to sign. Key ids are `k_` + 128 random bits in hex,
unique per instance, and are what a signature's `keyid` names.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlmodel import select

from core.crypto import decrypt_json, encrypt_json
from core.db import session_scope
from core.models import Peer

KEY_ID_PATTERN = re.compile(r"k_[0-9a-f]{32}")
_RAW_KEY_BYTES = 32
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class BadKey(ValueError):
    """A key, key id or signature that is not what it must be; the message says which and why."""


def b64url(data: bytes) -> str:
    """Unpadded base64url, the form keys, receipts and signatures travel in."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str, what: str) -> bytes:
    """The bytes of unpadded (or padded) base64url `text`; a clear error naming `what` otherwise."""
    stripped = text.rstrip("=")
    if not _B64URL.fullmatch(stripped) or len(stripped) % 4 == 1:
        raise BadKey(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadKey(f"{what} is not base64url") from exc


def new_key_id() -> str:
    return f"k_{secrets.token_hex(16)}"


def check_key_id(key_id: str) -> str:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise BadKey("a key id is 'k_' and 32 lower-case hex digits")
    return key_id


@dataclass(frozen=True)
class MintedKey:
    """A new key pair: what goes on our `peer` row (the private key already sealed)."""

    key_id: str
    public_key: str  # base64url of the raw 32 bytes
    sealed_private_key: str  # Fernet, with the instance's secret key


def mint() -> MintedKey:
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return MintedKey(
        key_id=new_key_id(),
        public_key=public_key_text(private.public_key()),
        sealed_private_key=encrypt_json({"ed25519": b64url(raw)}),
    )


def public_key_text(key: Ed25519PublicKey) -> str:
    return b64url(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def open_private_key(sealed: str) -> Ed25519PrivateKey:
    """Our private key, unsealed in memory (core.crypto.SecretKeyError if the secret key changed)."""
    raw = from_b64url(str(decrypt_json(sealed).get("ed25519", "")), "the stored private key")
    if len(raw) != _RAW_KEY_BYTES:
        raise BadKey("the stored private key is not an Ed25519 key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key(text: str) -> Ed25519PublicKey:
    """A peer's public key from its base64url text, checked (an Ed25519 key is exactly 32 bytes)."""
    raw = from_b64url(text, "the public key")
    if len(raw) != _RAW_KEY_BYTES:
        raise BadKey(f"the public key must be 32 bytes (Ed25519), not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return b64url(key.sign(data))


def verifies(key: Ed25519PublicKey, data: bytes, signature: str) -> bool:
    try:
        key.verify(from_b64url(signature, "the signature"), data)
    except (InvalidSignature, BadKey):
        return False
    return True


# --- the keys of stored peers ----------------------------------------------------------------------


@dataclass(frozen=True)
class TheirKey:
    """A key another instance signs its requests to us with, and the connection it was minted for."""

    key_id: str
    public_key: Ed25519PublicKey
    peer_id: int
    connection_id: int


@dataclass(frozen=True)
class OurKey:
    """What we sign requests to a peer with: our key for that connection and their connection's uid."""

    key_id: str
    private_key: Ed25519PrivateKey
    their_connection_uid: str


def their_key(key_id: str) -> TheirKey | None:
    """The peer key named `key_id`, or None when no peer of this instance has it."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        return None
    with session_scope() as session:
        peer = session.exec(select(Peer).where(Peer.their_key_id == key_id)).first()
    if peer is None or peer.their_public_key is None:
        return None
    assert peer.id is not None
    return TheirKey(key_id, public_key(peer.their_public_key), peer.id, peer.connection_id)


def our_key(peer: Peer) -> OurKey:
    """Our signing key for `peer`'s connection (the handshake must have given us their uid)."""
    if peer.their_connection_uid is None:
        raise BadKey(f"connection {peer.connection_id}: the peer's connection id is not known yet")
    return OurKey(peer.our_key_id, open_private_key(peer.our_private_key), peer.their_connection_uid)
