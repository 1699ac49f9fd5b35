"""Parsing a received AS2 message: decrypt, decompress, verify, with pyas2lib's building blocks.

This is pyas2lib 1.4.4's `Message.parse` step for step (same checks, same order, same
exceptions, so the same disposition modifiers), without what made it cost three times the
work and several copies of the message:

* its debug log lines are f-strings that serialize the whole message (`mime_to_bytes`) on every
  call, whatever the log level — twice per message, once more per MDN part;
* it builds and signs an MDN of its own, which receive.py throws away to build the one it sends
  (with its fallbacks) — so every MDN was signed twice;
* it logs an ERROR with a traceback for every refused message;
* it parses the partner's certificate again for every message (cached here by its bytes).

Signatures are still checked through `pyas2lib.as2.verify_message` (looked up at call time), so
core.as2.replay's recording of the verified signature values sees them.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Callable
from email import message as email_message
from email import message_from_bytes
from functools import lru_cache
from typing import Any

# The headers pyas2lib keeps from the decrypted/verified part when it puts the HTTP headers back.
_PRESERVED = ("content-type", "content-disposition", "content-transfer-encoding")
_SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")


@lru_cache(maxsize=256)
def _certificate(pem: bytes) -> Any:
    """A partner's certificate parsed once per process (keyed by its bytes: a new one is parsed anew)."""
    from oscrypto import asymmetric

    return asymmetric.load_certificate(pem)


def _verify_cert(sender: Any) -> Any:
    if sender.validate_certs:  # chain validation wanted: pyas2lib's own path, every time
        return sender.load_verify_cert()
    return _certificate(bytes(sender.verify_cert))


def _decompressed(message: Any, payload: Any) -> tuple[bool, Any]:
    from pyas2lib import as2

    if (
        payload.get_content_type() == "application/pkcs7-mime"
        and payload.get_param("smime-type") == "compressed-data"
    ):
        return True, message_from_bytes(as2.decompress_message(payload.get_payload(decode=True)))
    return False, payload


def parse(
    message: Any, raw: bytes, find_org_partner: Callable[[str, str], tuple[Any, Any]]
) -> Exception | None:
    """Parse `raw` (HTTP headers, blank line, body) into the pyas2lib `message`.

    Returns the exception that refused the message (its `disposition_modifier` says why), or
    None when it was decrypted, decompressed and verified as the sender's profile requires.
    Raises only when the bytes are not MIME at all (pyas2lib raised there too).
    """
    from pyas2lib import as2
    from pyas2lib.exceptions import InsufficientSecurityError, PartnerNotFound

    message.payload = message_from_bytes(raw)
    del raw
    as2_headers: dict[str, str] = {}
    for key, value in message.payload.items():
        key = key.lower()
        if key == "message-id":
            message.message_id = value.lstrip("<").rstrip(">")
        as2_headers[key] = value

    error: Exception | None = None
    try:
        org_id = as2.unquote_as2name(as2_headers["as2-to"])
        partner_id = as2.unquote_as2name(as2_headers["as2-from"])
        message.receiver, message.sender = find_org_partner(org_id, partner_id)
        if not message.receiver:
            raise PartnerNotFound(f"Unknown AS2 organization with id {org_id}")
        if not message.sender:
            raise PartnerNotFound(f"Unknown AS2 partner with id {partner_id}")

        if message.sender.encrypt and message.payload.get_content_type() != "application/pkcs7-mime":
            raise InsufficientSecurityError(
                f"Incoming messages from partner {partner_id} are must be encrypted "
                f"but encrypted message not found."
            )
        if (
            message.payload.get_content_type() == "application/pkcs7-mime"
            and message.payload.get_param("smime-type") == "enveloped-data"
        ):
            message.encrypted = True
            encrypted = message.payload.get_payload(decode=True)
            message.enc_alg, decrypted = as2.decrypt_message(encrypted, message.receiver.decrypt_key)
            del encrypted
            message.payload = message_from_bytes(decrypted)
            if message.payload.get_content_type() == "text/plain":
                message.payload = email_message.Message()
                message.payload.set_payload(decrypted)
                message.payload.set_type("application/edi-consent")
            del decrypted

        message.compressed, message.payload = _decompressed(message, message.payload)

        if message.sender.sign and message.payload.get_content_type() != "multipart/signed":
            raise InsufficientSecurityError(
                f"Incoming messages from partner {partner_id} are must be signed "
                f"but signed message not found."
            )
        if message.payload.get_content_type() == "multipart/signed":
            message.signed = True
            signature = None
            for part in message.payload.walk():
                if part.get_content_type() in _SIGNATURE_TYPES:
                    signature = part.get_payload(decode=True)
                else:
                    message.payload = part
            mic_content = as2.canonicalize(
                message.payload, canonicalize_as_binary=message.sender.canonicalize_as_binary
            )
            message.digest_alg = as2.verify_message(mic_content, signature, _verify_cert(message.sender))
            digest = hashlib.new(message.digest_alg)
            digest.update(mic_content)
            del mic_content
            message.mic = binascii.b2a_base64(digest.digest()).strip()

        if not message.compressed:
            message.compressed, message.payload = _decompressed(message, message.payload)
    except Exception as exc:
        error = exc

    # The HTTP (AS2) headers go back on the payload, as pyas2lib does.
    for key, value in as2_headers.items():
        if message.payload.get(key) and key not in _PRESERVED:
            del message.payload[key]
        message.payload.add_header(key, value)
    return error
