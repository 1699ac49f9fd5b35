"""Building a large outgoing AS2 message into a file, in bounded memory.

What pyas2lib's `Message.build` makes (same headers, same multipart/signed layout, same MIC over
the same signed bytes), for a payload in a file: the payload is read twice (once to hash it for
the MIC and signature, once to write or encrypt the message), never held whole. Compression is
not taken on here (`NotStreamable`): such messages are built by pyas2lib, within
TRADELANE_AS2_MAX_IN_MEMORY_BYTES.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from email import message as email_message
from email import utils as email_utils
from typing import IO, Any

from core.as2 import cms_stream
from core.as2.cms_stream import CHUNK, NotStreamable


@dataclass
class Built:
    """A message built into `body` (an open file, at its end): what send.py records and POSTs."""

    message_id: str
    headers: dict[str, str]
    size: int
    mic: bytes | None
    digest_alg: str | None
    signed: bool
    encrypted: bool


def _chunks(source: IO[bytes], size: int) -> Iterator[bytes]:
    source.seek(0)
    left = size
    while left:
        chunk = source.read(min(CHUNK, left))
        if not chunk:
            raise ValueError("the payload file is shorter than announced")
        left -= len(chunk)
        yield chunk


def _header_block(entity: email_message.Message) -> bytes:
    """An entity's headers as pyas2lib's canonicalize writes them (they are signed as such)."""
    return "".join(f"{k}: {v}\r\n" for k, v in entity.items()).encode("utf-8") + b"\r\n"


def build(
    sender: Any,
    receiver: Any,
    payload: IO[bytes],
    size: int,
    out: IO[bytes],
    *,
    filename: str,
    subject: str,
    content_type: str,
    disposition_notification_to: str,
) -> Built:
    """Build the message for `receiver` (a pyas2lib Partner) from `size` bytes of `payload` into
    `out`. Raises NotStreamable when pyas2lib must build it (compression, other ciphers)."""
    from pyas2lib.as2 import AS2_VERSION, EDIINT_FEATURES
    from pyas2lib.exceptions import ImproperlyConfigured
    from pyas2lib.utils import make_mime_boundary, quote_as2name

    if receiver.compress:
        raise NotStreamable("compression")
    if receiver.encrypt and not str(receiver.enc_alg).startswith("aes_"):
        raise NotStreamable(f"cipher {receiver.enc_alg}")
    if receiver.sign and not sender.sign_key:
        raise ImproperlyConfigured("Signing of messages is enabled but sign key is not set for the sender.")
    if receiver.encrypt and not receiver.encrypt_cert:
        raise ImproperlyConfigured(
            "Encryption of messages is enabled but encrypt key is not set for the receiver."
        )
    message_id = email_utils.make_msgid(domain=sender.domain).lstrip("<").rstrip(">")

    # The payload's entity: binary whatever its type (pyas2lib would 8bit-encode other types,
    # which a receiver then canonicalizes as text, line by line).
    part = email_message.Message()
    part["Content-Type"] = content_type
    part["Content-Transfer-Encoding"] = "binary"
    part.add_header("Content-Disposition", "attachment", filename=filename)
    part_head = _header_block(part)

    top: email_message.Message = part
    prefix, suffix = part_head, b""  # the entity = prefix + payload + suffix
    mic = digest_alg = None
    if receiver.sign:
        digest_alg = cms_stream.normalized_digest(receiver.digest_alg)
        h = hashlib.new(digest_alg)
        h.update(part_head)
        for chunk in _chunks(payload, size):
            h.update(chunk)
        digest = h.digest()
        mic = binascii.b2a_base64(digest).strip()
        signature = cms_stream.sign_digest(digest, digest_alg, sender.sign_key)
        boundary = make_mime_boundary()
        top = email_message.Message()
        top["Content-Type"] = "multipart/signed"
        top.set_param("protocol", "application/pkcs7-signature")
        top.set_param("micalg", str(receiver.digest_alg))
        top.set_boundary(boundary)
        signature_part = email_message.Message()
        signature_part["Content-Type"] = "application/pkcs7-signature"
        signature_part.set_param("name", "smime.p7s")
        signature_part.set_param("smime-type", "signed-data")
        signature_part.add_header("Content-Disposition", "attachment", filename="smime.p7s")
        signature_part["Content-Transfer-Encoding"] = "base64"
        encoded = binascii.b2a_base64(signature)
        lines = b"".join(encoded[i : i + 76] + b"\n" for i in range(0, len(encoded) - 1, 76))
        delimiter = b"--" + boundary.encode()
        prefix = delimiter + b"\r\n" + part_head
        suffix = (
            b"\r\n" + delimiter + b"\r\n" + _header_block(signature_part)
            + lines.replace(b"\n", b"\r\n") + b"\r\n" + delimiter + b"--\r\n"
        )  # fmt: skip

    def entity() -> Iterator[bytes]:
        yield prefix
        yield from _chunks(payload, size)
        yield suffix

    entity_size = len(prefix) + size + len(suffix)
    headers = {k: v for k, v in top.items() if k.lower() != "content-transfer-encoding" or not receiver.sign}
    if receiver.encrypt:
        # What is encrypted is a whole entity: its headers, then its body.
        top_head = _header_block(top) if receiver.sign else b""
        plain_size = len(top_head) + entity_size

        def plaintext() -> Iterator[bytes]:
            if top_head:
                yield top_head
            yield from entity()

        cms_stream.encrypt(
            plaintext(), plain_size, receiver.enc_alg, receiver.load_encrypt_cert(),
            getattr(receiver, "key_enc_alg", "rsaes_pkcs1v15"), out,
        )  # fmt: skip
        envelope = email_message.Message()
        envelope["Content-Type"] = "application/pkcs7-mime"
        envelope.set_param("name", "smime.p7m")
        envelope.set_param("smime-type", "enveloped-data")
        envelope.add_header("Content-Disposition", "attachment", filename="smime.p7m")
        envelope["Content-Transfer-Encoding"] = "binary"
        headers = dict(envelope.items())
    else:  # signed: the multipart's body; neither signed nor encrypted: the payload alone
        for chunk in entity() if receiver.sign else _chunks(payload, size):
            out.write(chunk)

    headers.update(
        {
            "AS2-Version": AS2_VERSION,
            "ediint-features": EDIINT_FEATURES,
            "Message-ID": f"<{message_id}>",
            "AS2-From": quote_as2name(sender.as2_name),
            "AS2-To": quote_as2name(receiver.as2_name),
            "Subject": subject,
            "Date": email_utils.formatdate(localtime=True),
        }
    )
    if receiver.mdn_mode:
        headers["disposition-notification-to"] = disposition_notification_to
        if receiver.mdn_digest_alg:
            headers["disposition-notification-options"] = (
                f"signed-receipt-protocol=required, pkcs7-signature; "
                f"signed-receipt-micalg=optional, {receiver.mdn_digest_alg}"
            )
        if receiver.mdn_mode == "ASYNC":
            if not sender.mdn_url:
                raise ImproperlyConfigured(
                    "MDN URL must be set in the organization when MDN mode is set to ASYNC"
                )
            headers["receipt-delivery-option"] = sender.mdn_url
    out.flush()
    return Built(
        message_id, headers, out.tell(), mic, digest_alg, bool(receiver.sign), bool(receiver.encrypt)
    )
