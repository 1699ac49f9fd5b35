"""MIME both ways: the message a push sends, generated around a spooled file; the attachments a
message's BODYSTRUCTURE names, with clean unique file names.

A pushed message is never whole in memory: `compose` makes everything but the attachment's
base64 lines (headers and a short text part from the `email` package), and `message_chunks`
streams head, the spool encoded in blocks of whole 76-character lines, and tail.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import itertools
import mimetypes
import posixpath
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message, MIMEPart
from email.utils import format_datetime, make_msgid
from typing import Any, BinaryIO

from core.endpoints.email.decoders import B64_LINE
from core.endpoints.email.imap_wire import pairs, quote, text
from core.endpoints.email.settings import SmtpSettings

B64_BLOCK = B64_LINE * 8 * 1024  # raw bytes encoded at a time (about 0.45 MiB)

_POLICY = email_policy.SMTP


# --- building --------------------------------------------------------------------------------


def compose(smtp: SmtpSettings, name: str, rel: str, size: int, sha256: str) -> tuple[bytes, bytes, str]:
    """Everything but the attachment's base64 lines: (head, tail, Message-ID)."""
    name = "".join(char if char.isprintable() else "_" for char in name)
    values = {"name": name, "path": rel, "size": size, "sha256": sha256}
    boundary = f"=_tradelane_{secrets.token_hex(12)}"
    message_id = make_msgid(domain=smtp.envelope_from.rpartition("@")[2] or None)

    root = EmailMessage(policy=_POLICY)
    root["From"] = smtp.sender
    root["To"] = ", ".join(smtp.to)
    subject = "".join(char if char.isprintable() else " " for char in smtp.subject.format_map(values))
    root["Subject"] = " ".join(subject.split())
    root["Date"] = format_datetime(datetime.now(UTC))
    root["Message-ID"] = message_id
    root["MIME-Version"] = "1.0"
    root["Content-Type"] = f'multipart/mixed; boundary="{boundary}"'
    root.set_payload("")

    body_part = MIMEPart(policy=_POLICY)
    body = smtp.body.format_map(values).rstrip("\n") + "\n"
    plain = body.isascii() and all(len(line) < 900 for line in body.splitlines())
    body_part.set_content(body, cte="7bit" if plain else "quoted-printable")

    attachment = MIMEPart(policy=_POLICY)
    mime_type = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    attachment.add_header("Content-Type", mime_type, name=name)
    attachment.add_header("Content-Disposition", "attachment", filename=name)
    attachment["Content-Transfer-Encoding"] = "base64"
    attachment.set_payload("")

    delimiter = f"--{boundary}\r\n".encode("ascii")
    head = b"".join(
        [
            root.as_bytes(),
            b"This is a multi-part message in MIME format.\r\n\r\n",
            delimiter,
            body_part.as_bytes(),
        ]
    )
    if not head.endswith(b"\r\n"):
        head += b"\r\n"
    head += delimiter + attachment.as_bytes()
    tail = (b"\r\n" if size == 0 else b"") + f"--{boundary}--\r\n".encode("ascii")
    return head, tail, message_id


def message_chunks(head: bytes, spool: BinaryIO, tail: bytes) -> Iterator[bytes]:
    """The whole message, each chunk whole CRLF lines: head, the spool in base64, tail."""
    yield head
    spool.seek(0)
    while block := spool.read(B64_BLOCK):
        yield base64.encodebytes(block).replace(b"\n", b"\r\n")
    yield tail


# --- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    part: str  # IMAP part number, "2" or "1.3"
    name: str  # sanitised, unique within its message
    encoding: str  # lower-case Content-Transfer-Encoding
    encoded_size: int  # octets as stored, from BODYSTRUCTURE


def _leaves(body: Any, number: str = "") -> Iterator[tuple[str, builtins.list[Any]]]:
    if not isinstance(body, builtins.list) or not body:
        return
    if isinstance(body[0], builtins.list):  # multipart: children, then the subtype and extensions
        children = itertools.takewhile(lambda child: isinstance(child, builtins.list), body)
        for index, child in enumerate(children, 1):
            yield from _leaves(child, f"{number}.{index}" if number else str(index))
    else:
        yield number or "1", body


def decode_filename(
    disposition_params: builtins.list[tuple[str, str]], type_params: builtins.list[tuple[str, str]]
) -> str | None:
    """The filename a part's parameters name (RFC 2231 and RFC 2047 decoded), if any."""
    message = Message()

    def header(kind: str, params: builtins.list[tuple[str, str]]) -> str:
        return kind + "".join(f"; {key}={quote(value)}" for key, value in params)

    if disposition_params:
        message["Content-Disposition"] = header("attachment", disposition_params)
    if type_params:
        message["Content-Type"] = header("application/octet-stream", type_params)
    try:
        name = message.get_filename()
    except (ValueError, LookupError, TypeError):
        name = None
    if name is None:
        return None
    if "=?" in name:
        with contextlib.suppress(ValueError, LookupError, binascii.Error):
            name = str(make_header(decode_header(name)))
    return name


def safe_filename(raw: str | None, part: str, mime_type: str) -> str:
    """One clean path segment: the basename, printable characters only, at most 200 UTF-8 bytes."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char if char.isprintable() else "_" for char in name).strip()
    if name in ("", ".", ".."):
        extension = mimetypes.guess_extension(mime_type) or ".bin"
        name = f"attachment-{part}{extension}"
    if len(name.encode("utf-8")) > 200:
        stem, extension = posixpath.splitext(name)
        extension = extension if len(extension.encode("utf-8")) <= 20 else ""
        budget = 200 - len(extension.encode("utf-8"))
        stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
        name = stem + extension
    return name


def attachments_of(bodystructure: Any) -> builtins.list[Attachment]:
    """The parts of a BODYSTRUCTURE that are files, with unique sanitised names."""
    found: builtins.list[Attachment] = []
    used: set[str] = set()
    for part, leaf in _leaves(bodystructure):
        if len(leaf) < 7:
            continue
        main, sub = text(leaf[0]).lower(), text(leaf[1]).lower()
        encoding = text(leaf[5]).lower() or "7bit"
        try:
            size = int(text(leaf[6]))
        except ValueError:
            continue
        # Extension data follows the basic fields: text has a line count, message/rfc822 an
        # envelope, a body structure and a line count. Then MD5, then the disposition.
        extension = (
            7
            + (1 if main == "text" else 0)
            + (3 if (main, sub) in (("message", "rfc822"), ("message", "global")) else 0)
        )
        disposition = leaf[extension + 1] if len(leaf) > extension + 1 else None
        kind, disposition_params = "", []
        if isinstance(disposition, builtins.list) and disposition:
            kind = text(disposition[0]).lower()
            disposition_params = pairs(disposition[1]) if len(disposition) > 1 else []
        raw = decode_filename(disposition_params, pairs(leaf[2]))
        if raw is None and kind != "attachment":
            continue
        name = safe_filename(raw, part, f"{main}/{sub}")
        if name in used:
            stem, extension_ = posixpath.splitext(name)
            counter = 2
            while f"{stem}-{counter}{extension_}" in used:
                counter += 1
            name = f"{stem}-{counter}{extension_}"
        used.add(name)
        found.append(Attachment(part=part, name=name, encoding=encoding, encoded_size=size))
    return found
