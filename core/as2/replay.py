"""Replays: a captured signed AS2 message sent again under a new Message-ID.

The Message-ID is an unsigned HTTP header, so it cannot tell a replay from a new message. The
signature can: a signer's signature value covers the digest of the signed content and — as
pyas2lib, `openssl cms` and AS2 products sign — the signing time. A replay carries the very
same signature whatever its Message-ID, headers or envelope (re-encrypted, re-compressed); the
same file signed again by the partner is a new signature, so it is not mistaken for a replay.

`digest(message, signatures)` is SHA-256 over the MIC (the signed content's digest) and the verified
signature values; `seen_within_window()` finds a message from the same partner with that digest
taken in within TRADELANE_AS2_DUPLICATE_WINDOW_SECONDS.

pyas2lib does not hand out the signature it verified, so `recording()` wraps the function it
verifies with and collects the signature values in this thread; should a pyas2lib release verify
differently, the digest falls back to the MIC alone (then the same content re-signed within the
window also counts as a replay).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from core.as2.settings import as2_settings
from core.db import session_scope
from core.models import As2Message, utcnow

_local = threading.local()
_install_lock = threading.Lock()


def _signature_values(signature: bytes) -> list[bytes]:
    from asn1crypto import cms

    info = cms.ContentInfo.load(signature)
    return sorted({bytes(signer["signature"].native) for signer in info["content"]["signer_infos"]})


def _install() -> None:
    """Wrap pyas2lib's verify_message (once per process) to note what it verified, per thread."""
    import pyas2lib.as2

    with _install_lock:
        original = pyas2lib.as2.verify_message
        if getattr(original, "tradelane_recording", False):
            return

        def verify_and_record(data: bytes, signature: bytes, cert: Any) -> Any:
            digest_alg = original(data, signature, cert)  # raises when the signature is bad
            found: list[bytes] | None = getattr(_local, "found", None)
            if found is not None:
                found[:] = _signature_values(signature)
            return digest_alg

        verify_and_record.tradelane_recording = True  # type: ignore[attr-defined]
        pyas2lib.as2.verify_message = verify_and_record


@contextmanager
def recording() -> Iterator[list[bytes]]:
    """Within this block, the list given fills with the signature values pyas2lib verifies here."""
    _install()
    found: list[bytes] = []
    _local.found = found
    try:
        yield found
    finally:
        _local.found = None


def note_verified(signature: bytes) -> None:
    """Note a signature verified outside pyas2lib (core.as2.cms_stream) as `recording()` would."""
    found: list[bytes] | None = getattr(_local, "found", None)
    if found is not None:
        found[:] = _signature_values(signature)


def digest(message: Any, signatures: list[bytes]) -> str | None:
    """The replay digest of a verified signed message, else None."""
    if not message.signed or not message.mic:
        return None
    mic = message.mic if isinstance(message.mic, bytes) else str(message.mic).encode()
    h = hashlib.sha256(b"tradelane-as2-signed\0")
    h.update(str(message.digest_alg).encode() + b"\0" + mic + b"\0")
    for value in signatures:
        h.update(len(value).to_bytes(4, "big") + value)
    return h.hexdigest()


def seen_within_window(partner_as2_id: str, signed_digest: str, session: Session | None = None) -> bool:
    """A message from this partner with this digest was taken in within the duplicate window
    (looked up in `session` when given, else in a session of its own)."""
    if session is None:
        with session_scope() as own:
            return seen_within_window(partner_as2_id, signed_digest, own)
    since = utcnow() - timedelta(seconds=as2_settings().duplicate_window_seconds)
    rows = session.exec(_SEEN, params={"digest": signed_digest, "since": since}).all()
    return any(direction == "in" and partner == partner_as2_id for direction, partner in rows)


# The partner and direction are checked on the rows found (seen_within_window), not in the query:
# with them there SQLite chose the (direction, partner, Message-ID) index and read every message
# from the partner.
# Built once: building and keying a statement cost as much as running it.
_SEEN = select(As2Message.direction, As2Message.partner_as2_id).where(
    As2Message.signed_digest == bindparam("digest"),
    As2Message.status == "received",
    col(As2Message.created_at) >= bindparam("since"),
)
