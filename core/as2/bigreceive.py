"""Parsing a large received AS2 message from its spool file, in bounded memory.

core.as2.parse's checks in the same order with the same exceptions (so the same dispositions),
for the shapes large messages come in: an AES EnvelopedData (binary) is decrypted into a second
file (core.as2.cms_stream); a multipart/signed of one binary part and its signature is split by
scanning for its delimiter, its signed bytes hashed as they stream (headers as pyas2lib
canonicalizes them, then the body) and the signature checked against that digest. Its lines may
break with CR LF or, as `openssl cms -sign` writes them, with bare LFs, after a preamble or none.
The payload is left in the file: `Content` says where, for receive.py to copy into the mailbox.

Anything else (compressed, base64, other ciphers, text canonicalization, nested multiparts)
raises NotStreamable before any check has failed, and the message goes the in-memory way within
TRADELANE_AS2_MAX_IN_MEMORY_BYTES.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message as email_message
from email import message_from_bytes
from typing import IO, Any

from core.as2 import cms_stream
from core.as2.cms_stream import CHUNK, NotStreamable
from core.as2.parse import delimiter_line_break, find_parties, header_entity

_IDENTITY = ("", "binary", "8bit", "7bit")
_MAX_HEAD = 64 * 1024
_MAX_SIGNATURE = 1024 * 1024
_MAX_PREAMBLE = 64 * 1024
_BLANK_LINE = re.compile(rb"\n\r?\n")


@dataclass
class Content:
    """The payload: `length` bytes of `file` from `start`."""

    file: IO[bytes]
    start: int
    length: int

    def chunks(self) -> Iterator[bytes]:
        return _read(self.file, self.start, self.start + self.length)


def _read(f: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    f.seek(start)
    left = end - start
    while left > 0:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise ValueError("the message ends early")
        left -= len(chunk)
        yield chunk


def _find(f: IO[bytes], needle: bytes, start: int, end: int) -> int:
    """The first offset of `needle` in f[start:end], or -1 (read in chunks that overlap)."""
    at = start
    while at < end:
        f.seek(at)
        block = f.read(min(CHUNK + len(needle), end - at))
        found = block.find(needle)
        if found >= 0:
            return at + found
        if len(block) < len(needle):
            return -1
        at += len(block) - len(needle) + 1
    return -1


def _head(f: IO[bytes], start: int, end: int) -> tuple[bytes, int]:
    """(header block with its last line break, where the body starts) of the entity at
    f[start:end]. The headers end at the first blank line, CR LF or bare LF (`openssl cms`
    writes the latter), as they do for the email parser."""
    f.seek(start)
    block = f.read(min(_MAX_HEAD, end - start))
    blank = _BLANK_LINE.search(block)
    if blank is None or b":" not in block[: block.find(b"\n")]:
        raise NotStreamable("headers")
    head = block[: blank.start() + 1]
    if b"\r" in head.replace(b"\r\n", b""):
        raise NotStreamable("a bare CR in the headers")  # a line break too, to the email parser
    return head, start + blank.end()


def _identity_encoded(entity: email_message.Message) -> bool:
    encoding = str(entity.get("content-transfer-encoding", "")).strip().lower()
    return entity.get_content_maintype() != "multipart" and encoding in _IDENTITY


def parse(
    message: Any,
    head: bytes,
    body: IO[bytes],
    size: int,
    find_org_partner: Callable[[str, str], tuple[Any, Any]],
    scratch: Callable[[], IO[bytes]],
) -> tuple[Exception | None, Content | None]:
    """Parse the message whose HTTP headers are `head` and whose body is `size` bytes of `body`
    into the pyas2lib `message` (as core.as2.parse.parse does). `scratch()` gives a temporary
    file (the decrypted content goes there). Returns (the exception that refused it or None,
    where the payload is); raises NotStreamable for a shape left to the in-memory parser."""
    from pyas2lib.exceptions import InsufficientSecurityError

    envelope = header_entity(head)
    as2_headers = {key.lower(): value for key, value in envelope.items()}
    kind = envelope.get_content_type()
    signed_shape = (
        kind == "multipart/signed" and str(envelope.get("content-transfer-encoding", "")) in _IDENTITY
    )
    if not (_identity_encoded(envelope) and kind == "application/pkcs7-mime") and not signed_shape:
        raise NotStreamable(kind)
    if kind == "application/pkcs7-mime" and envelope.get_param("smime-type") != "enveloped-data":
        raise NotStreamable("compressed")
    message.payload = envelope
    if "message-id" in as2_headers:
        message.message_id = as2_headers["message-id"].lstrip("<").rstrip(">")

    error: Exception | None = None
    content: Content | None = None
    try:
        partner_id = find_parties(message, as2_headers, find_org_partner)
        if message.sender.encrypt and kind != "application/pkcs7-mime":
            raise InsufficientSecurityError(
                f"Incoming messages from partner {partner_id} are must be encrypted "
                f"but encrypted message not found."
            )
        f, start, end = body, 0, size
        if kind == "application/pkcs7-mime":
            message.encrypted = True
            plain = scratch()
            cms_stream.decrypt(body, size, message.receiver.decrypt_key, plain)
            plain.flush()
            f, end = plain, plain.tell()
            inner_head, start = _head(f, 0, end)
            message.payload = header_entity(inner_head)
        entity = message.payload
        if entity.get_content_type() == "application/pkcs7-mime":
            raise NotStreamable("compressed")  # nothing checked has failed yet: the parser's turn
        if message.sender.sign and entity.get_content_type() != "multipart/signed":
            raise InsufficientSecurityError(
                f"Incoming messages from partner {partner_id} are must be signed "
                f"but signed message not found."
            )
        if entity.get_content_type() == "multipart/signed":
            message.signed = True
            content = _verify_signed(message, entity, f, start, end)
        else:
            if not _identity_encoded(entity):
                raise NotStreamable("encoding")
            content = Content(f, start, end - start)
    except NotStreamable:
        raise
    except Exception as exc:
        error = exc

    for key, value in as2_headers.items():
        if message.payload.get(key) and key not in (
            "content-type",
            "content-disposition",
            "content-transfer-encoding",
        ):
            del message.payload[key]
        message.payload.add_header(key, value)
    return error, content


def _verify_signed(
    message: Any, container: email_message.Message, f: IO[bytes], start: int, end: int
) -> Content:
    """Split the multipart/signed at f[start:end], verify it; the signed part's body is the payload."""
    boundary = container.get_boundary()
    if not boundary or not boundary.isascii():
        raise NotStreamable("boundary")
    part_start, part_end, signature_bytes = _split(f, start, end, b"--" + boundary.encode("ascii"))
    part_head, body_start = _head(f, part_start, part_end)
    part = header_entity(part_head)
    if part.get_content_type() == "application/pkcs7-mime":
        raise NotStreamable("compressed inside the signature")
    if not _identity_encoded(part) or (
        str(part.get("content-transfer-encoding", "")).lower() != "binary"
        and not message.sender.canonicalize_as_binary
    ):
        raise NotStreamable("a part canonicalized as text")
    signature_part = message_from_bytes(signature_bytes)
    if signature_part.get_content_type() not in (
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
    ):
        raise NotStreamable("no signature part")
    signature = signature_part.get_payload(decode=True)
    if not isinstance(signature, bytes):
        raise NotStreamable("signature part")
    message.payload = part
    # The signed bytes as pyas2lib's canonicalize makes them for a binary part: the headers
    # written back from the parsed entity, then the body.
    canonical_head = "".join(f"{k}: {v}\r\n" for k, v in part.items()).encode("utf-8") + b"\r\n"
    algorithms = cms_stream.signature_digest_algs(signature)

    def signed_bytes() -> Iterator[bytes]:
        yield canonical_head
        yield from _read(f, body_start, part_end)

    digests = cms_stream.digests_of(signed_bytes(), algorithms)
    message.digest_alg = cms_stream.verify_digest(digests, signature, _verify_cert(message.sender))
    digest = digests.get(message.digest_alg) or hashlib.new(message.digest_alg).digest()
    message.mic = binascii.b2a_base64(digest).strip()
    return Content(f, body_start, part_end - body_start)


def _split(f: IO[bytes], start: int, end: int, delimiter: bytes) -> tuple[int, int, bytes]:
    """(start, end) of the signed part of the multipart/signed at f[start:end], and its signature
    part's bytes. A preamble may come first; the delimiter lines break as the first one does
    (parse.delimiter_line_break), CR LF or bare LF: then a part ending in CR keeps it. Transport
    padding after a delimiter is left to the email parser."""
    first = _first_delimiter(f, start, end, delimiter)
    f.seek(first + len(delimiter))
    first_line_end = f.read(2)
    if delimiter_line_break(first_line_end, b"") is None:
        raise NotStreamable("transport padding after the first delimiter, or not a delimiter line")
    part_start = first + len(delimiter) + (2 if first_line_end == b"\r\n" else 1)
    # Each delimiter starts a line: found by its LF, its CR (if any) checked once the style is known.
    second = _find(f, b"\n" + delimiter, part_start, end)
    if second < 0:
        raise NotStreamable("no second delimiter")
    f.seek(second - 1)
    before_second = f.read(1)
    f.seek(second + 1 + len(delimiter))
    second_line_end = f.read(2)
    signature_start = second + 1 + len(delimiter) + (2 if second_line_end == b"\r\n" else 1)
    f.seek(signature_start)
    tail = f.read(min(_MAX_SIGNATURE, end - signature_start))
    closing = tail.find(b"\n" + delimiter)
    if closing < 0 or tail[closing + 1 + len(delimiter) :][:2] != b"--":
        raise NotStreamable("a third part, or no closing delimiter")
    line_break = delimiter_line_break(first_line_end, tail[:closing]) or b"\n"
    cr = len(line_break) - 1  # the CR before each delimiter, when lines break with CR LF
    if (
        not first_line_end.startswith(line_break)
        or not second_line_end.startswith(line_break)
        or (cr and (before_second != b"\r" or tail[closing - 1 : closing] != b"\r"))
    ):
        raise NotStreamable("delimiter lines broken in more than one way, or padded")
    return part_start, second - cr, tail[: closing - cr]


def _first_delimiter(f: IO[bytes], start: int, end: int, delimiter: bytes) -> int:
    """Where the first delimiter is: at the start of a line, after a preamble (such as
    "This is an S/MIME signed message") or none."""
    f.seek(start)
    block = f.read(min(_MAX_PREAMBLE + len(delimiter) + 1, end - start))
    if block.startswith(delimiter):
        return start
    at = block.find(b"\n" + delimiter)
    if at < 0:
        raise NotStreamable("no first delimiter, or a long preamble")
    return start + at + 1


def _verify_cert(sender: Any) -> Any:
    from core.as2 import parse

    return parse._verify_cert(sender)
