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

Messages skip the email parser where the structure is the plain one AS2 products send — an
enveloped or compressed body, a multipart/signed with one binary part and its signature: the
parser turns binary bodies into lists of lines and strings of 2–4 bytes per byte, peaking near
10 times the body at each level, and is a third of the CPU a small message costs besides. Header
blocks still go through it, so headers, and the bytes a signature covers, come out the same;
anything else (base64 bodies, nested multiparts, odd delimiters) takes the parser as before.
(Until 2026-12-07 only messages of 1 MiB and up did; a 10 KiB one now costs 0.5 ms less.)

Signatures are still checked through `pyas2lib.as2.verify_message` (looked up at call time), so
core.as2.replay's recording of the verified signature values sees them.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Callable
from email import message as email_message
from email import message_from_bytes
from email.parser import BytesHeaderParser
from functools import lru_cache
from typing import Any

from core.as2 import envelope

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


# ---- large messages without the email parser ------------------------------------------------

Bytes = bytes | bytearray  # a large decrypted body is a bytearray (core.as2.envelope)
_IDENTITY_ENCODINGS = ("", "binary", "8bit", "7bit")
_MAX_HEAD = 64 * 1024


def _head(data: Bytes, start: int = 0, stop: int | None = None) -> tuple[Bytes, int] | None:
    """(header block with its last CRLF, where the body starts) of the CRLF-delimited entity at
    data[start:stop], or None when it does not plainly start with header lines."""
    limit = min(start + _MAX_HEAD, len(data) if stop is None else stop)
    end = data.find(b"\r\n\r\n", start, limit)
    first_line = data[start : data.find(b"\n", start, limit)]
    if end < 0 or b":" not in first_line or b"\n\n" in data[start : end + 2]:
        return None  # no headers, or a bare-LF blank line first: the parser's business
    return data[start : end + 2], end + 4


def header_entity(head: Bytes) -> email_message.Message:
    """The entity of a header block alone (CRLF-terminated lines), its body left empty.

    Headers only: the whole parser also reads a multipart's (here absent) body, compiling a
    regular expression for its boundary, which is new in every message (0.1 ms each time)."""
    return _HEADERS.parsebytes(bytes(head) + b"\r\n")


_HEADERS = BytesHeaderParser()


def _leaf(head: Bytes, body: Bytes) -> email_message.Message | None:
    """A single-part entity from its header block and (identity-encoded) body, or None."""
    entity = header_entity(head)
    encoding = str(entity.get("content-transfer-encoding", "")).strip().lower()
    if entity.get_content_maintype() == "multipart" or encoding not in _IDENTITY_ENCODINGS:
        return None
    # Kept as bytes, which get_payload(decode=True) hands back as they are; set_payload() would
    # decode them into a str of 2 bytes per byte (surrogate escapes), encoded back on each get.
    entity._payload = body  # type: ignore[attr-defined]
    return entity


def _signed(container: email_message.Message, data: Bytes, start: int) -> email_message.Message | None:
    """A multipart/signed of exactly one binary part and a signature, split without the parser."""
    boundary = container.get_boundary()
    if not boundary or not boundary.isascii():
        return None
    delimiter = b"--" + boundary.encode("ascii")
    first = data.find(delimiter, start)
    if first < 0 or (first != start and data[first - 2 : first] != b"\r\n"):
        return None
    body_start = first + len(delimiter) + 2
    if data[body_start - 2 : body_start] != b"\r\n":
        return None
    body_end = data.find(b"\r\n" + delimiter, body_start)
    signature_start = body_end + 2 + len(delimiter) + 2
    if body_end < 0 or data[signature_start - 2 : signature_start] != b"\r\n":
        return None
    signature_end = data.find(b"\r\n" + delimiter, signature_start)
    if signature_end < 0 or data[signature_end + 2 + len(delimiter) :][:2] != b"--":
        return None  # a third part, or no closing delimiter
    split = _head(data, body_start, body_end)
    if split is None:
        return None
    head, at = split
    part = _leaf(head, data[at:body_end])
    encoding = str(part.get("content-transfer-encoding", "")).lower() if part is not None else ""
    if part is None or (encoding != "binary" and part.get_content_type() != "application/octet-stream"):
        return None  # other parts are canonicalized as text, which needs the parser's str payload
    signature = message_from_bytes(data[signature_start:signature_end])
    container.set_payload([part, signature])
    return container


def _parsed(data: Bytes) -> email_message.Message:
    """`email.message_from_bytes(data)`, without the parser for a large body it need not read."""
    if (split := _head(data)) is not None:
        head, start = split
        entity = header_entity(head)
        if entity.get_content_type() == "multipart/signed":
            signed = _signed(entity, data, start)
            if signed is not None:
                return signed
        elif (leaf := _leaf(head, data[start:])) is not None:
            return leaf
    return _from_bytes(data)


def _from_bytes(data: Bytes) -> email_message.Message:
    """The email parser's reading of `data`, with a signed part's last CR put back where a
    multipart/signed breaks its lines with bare LFs (as `openssl cms -sign` writes it).

    The parser takes CR LF before a delimiter as the delimiter's line break whatever the
    message's own line breaks are, so a binary part ending in CR lost that byte and its
    signature failed (openssl itself verifies it)."""
    parsed = message_from_bytes(data)
    parts = parsed.get_payload() if parsed.get_content_type() == "multipart/signed" else None
    if isinstance(parts, list) and parts and _bare_lf_part_ends_in_cr(data, parsed.get_boundary()):
        # The raw payload: get_payload() would hand binary content back with its bytes replaced.
        first: Any = parts[0]
        if isinstance(first._payload, str):
            first._payload += "\r"
    return parsed


def _bare_lf_part_ends_in_cr(data: Bytes, boundary: str | None) -> bool:
    """Whether the multipart/signed in `data` breaks its delimiter lines with bare LFs and its
    first part ends in CR (then "CR LF --boundary" is that CR and the bare-LF delimiter)."""
    if not boundary or not boundary.isascii():
        return False
    delimiter = b"\n--" + boundary.encode("ascii")
    first = data.find(delimiter)
    if first < 0:  # the body may start with the delimiter itself, without a preamble
        first = data.find(delimiter[1:])
        if first < 0:
            return False
        first -= 1
    line_end = first + len(delimiter)
    second = data.find(delimiter, line_end)
    closing = data.rfind(delimiter + b"--")
    if second < 0 or closing <= second:
        return False
    line_break = delimiter_line_break(data[line_end : line_end + 2], data[closing - 1 : closing])
    return line_break == b"\n" and data[second - 1 : second] == b"\r"


def delimiter_line_break(first_line_end: Bytes, before_closing: Bytes) -> bytes | None:
    """How a multipart/signed breaks its delimiter lines (both parse paths, in memory and
    streamed): CR LF, or a bare LF as `openssl cms -sign` writes them.

    Read from the end of its first delimiter line (the bytes just after the delimiter) and the
    byte before its closing delimiter: that one follows the (base64 text) signature, where no
    content is in doubt, so a CR there means CR LF delimiters after all. None when the first
    line ends otherwise (transport padding, or a closing delimiter)."""
    if first_line_end[:2] == b"\r\n":
        return b"\r\n"
    if first_line_end[:1] != b"\n":
        return None
    return b"\r\n" if before_closing[-1:] == b"\r" else b"\n"


def _envelope(head: bytes, body: bytes) -> email_message.Message:
    """The received message: HTTP headers (`head`, CRLF-terminated lines) and body."""
    entity = _leaf(head, body)
    if entity is not None and entity.get_content_type() == "application/pkcs7-mime":
        return entity
    return _from_bytes(head + b"\r\n" + body)


# ---- parsing ---------------------------------------------------------------------------------


def _decompressed(message: Any, payload: Any) -> tuple[bool, Any]:
    from pyas2lib import as2

    if (
        payload.get_content_type() == "application/pkcs7-mime"
        and payload.get_param("smime-type") == "compressed-data"
    ):
        compressed = payload.get_payload(decode=True)
        if isinstance(compressed, bytearray):  # asn1crypto takes bytes only
            compressed = bytes(compressed)
        return True, _parsed(as2.decompress_message(compressed))
    return False, payload


def parse(
    message: Any, head: bytes, body: bytes, find_org_partner: Callable[[str, str], tuple[Any, Any]]
) -> Exception | None:
    """Parse the received `head` (HTTP headers as CRLF-terminated MIME header lines) and `body`
    into the pyas2lib `message`.

    Returns the exception that refused the message (its `disposition_modifier` says why), or
    None when it was decrypted, decompressed and verified as the sender's profile requires.
    Raises only when the bytes are not MIME at all (pyas2lib raised there too).
    """
    from pyas2lib import as2
    from pyas2lib.exceptions import InsufficientSecurityError

    message.payload = _envelope(head, body)
    as2_headers: dict[str, str] = {}
    for key, value in message.payload.items():
        key = key.lower()
        if key == "message-id":
            message.message_id = value.lstrip("<").rstrip(">")
        as2_headers[key] = value

    error: Exception | None = None
    try:
        partner_id = find_parties(message, as2_headers, find_org_partner)

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
            key = message.receiver.decrypt_key
            lean = envelope.decrypt(encrypted, key)
            message.enc_alg, decrypted = lean if lean is not None else as2.decrypt_message(encrypted, key)
            del lean
            del encrypted
            message.payload = _parsed(decrypted)
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


def find_parties(
    message: Any, as2_headers: dict[str, str], find_org_partner: Callable[[str, str], tuple[Any, Any]]
) -> str:
    """The message's receiver (our organization) and sender (the partner) from AS2-To/AS2-From,
    each refused as pyas2lib refuses it when unknown (both parse paths, in memory and streamed);
    the partner's AS2 id, which later refusals name."""
    from pyas2lib import as2
    from pyas2lib.exceptions import PartnerNotFound

    org_id = as2.unquote_as2name(as2_headers["as2-to"])
    partner_id: str = as2.unquote_as2name(as2_headers["as2-from"])
    message.receiver, message.sender = find_org_partner(org_id, partner_id)
    if not message.receiver:
        raise PartnerNotFound(f"Unknown AS2 organization with id {org_id}")
    if not message.sender:
        raise PartnerNotFound(f"Unknown AS2 partner with id {partner_id}")
    return partner_id
