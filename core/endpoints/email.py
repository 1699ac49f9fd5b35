"""Email: push a file as a message attachment over SMTP; pull attachments out of an IMAP mailbox.

One endpoint may do either or both: configure `smtp_host` to send, `imap_host` to receive.

Settings and secrets (what each means, defaults, checks): core/endpoints/email_settings.py.

Push (`open_write(path)`): the bytes are spooled to an anonymous temporary file (SHA-256 computed
on the way). On commit the message is generated on the fly, never whole in memory: headers and a
short text part (with the size and SHA-256) from the `email` package, then the attachment base64
encoded from the spool in blocks of whole 76-character lines. smtplib's `sendmail` wants the whole
message as one bytes object, so the DATA phase is driven by hand: MAIL FROM (with SIZE when offered,
refusing early if over the server's limit), RCPT TO for each recipient - any refusal aborts the
transaction, so a message reaches all recipients or none - then DATA, the dot-stuffed CRLF lines,
and ".". The Message-ID is kept in `last_message_id` (and the stream's `message_id`). An abort
just closes the spool. The attachment filename is the path's last segment. Certificates are
verified (hostname included) unless `verify` is false.

Pull: a file is one attachment of one message, at path "<UID>/<filename>". `list("")` lists the
attachments of every message in `mailbox` matching `search` (one level deeper than other endpoints'
roots); `list("<UID>")` lists one message. An attachment is any non-multipart part with a filename
(Content-Disposition filename or Content-Type name, RFC 2231 and RFC 2047 decoded) or with
disposition "attachment"; the name is sanitised to one clean path segment ("attachment-<part>.bin"
when empty) and made unique within its message. Messages without attachments are left alone.
Sizes: exact for 7bit/8bit/binary; for base64 they are computed exactly from the encoded size and
two small partial fetches (first line length, last line and padding), falling back to an estimate
for irregular line lengths; for quoted-printable the encoded size is reported (an upper bound).
`modified` is the message's INTERNALDATE; `etag` is "<UIDVALIDITY>.<UID>.<part>".
`open_read` streams the part with `UID FETCH BODY.PEEK[part]<offset.length>` in 1 MiB windows and
decodes base64 / quoted-printable incrementally, so neither reading nor listing marks a message
\\Seen and no attachment is ever held whole. UIDs are only meaningful within one UIDVALIDITY; a path
whose message or attachment name no longer matches is `NotFound`.

Taken once: `delete(path)` marks that attachment taken with the IMAP keyword
"TradelaneTaken.<part>"; once every attachment of a message is taken, `after_pull` applies to the
message: "seen" sets \\Seen, "move:<folder>" sets \\Seen and moves it (UID MOVE, or COPY + \\Deleted +
EXPUNGE; the folder is created on first use), "delete" sets \\Deleted and expunges it. The message
also gets the keyword "TradelaneTaken", and listings search `(<search>) NOT KEYWORD TradelaneTaken`,
so a message is taken once even with `search` "ALL" or after a crash between attachments. Servers
that do not allow custom keywords (no "\\*" in PERMANENTFLAGS) fall back to remembering taken
attachments in this endpoint object. Without UIDPLUS, expunging also removes any other message
already flagged \\Deleted in that mailbox (as any IMAP client's expunge would).

Errors: SMTP 530/534/535 and IMAP login failures ([AUTHENTICATIONFAILED] and other NO) are
`AuthError`; certificate problems ("... TLS certificate verify failed ...") and other TLS
handshake failures ("... TLS error ...") are `TlsError`, not retryable; connection refused,
resets, timeouts and dropped connections are `Unreachable` and SMTP 4xx `TransientError`;
a 5xx recipient refusal is `PermissionDenied`; other 5xx answers `EndpointError`; DNS failures are
`DnsError` (`TemporaryDnsError`, retried, for a temporary resolver failure); a missing
STARTTLS/AUTH extension, a missing mailbox or a bad setting is `ConfigError`. Messages and `uri()`
("email:smtp://host:port/<path> → to", "email:imap://user@host:port/INBOX/<path>") never contain a
secret. A dropped IMAP connection is reopened once for idempotent commands (list, stat, reads).
A push whose final "." reply is lost may have been delivered; retrying it sends a second message.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import hashlib
import imaplib
import io
import itertools
import mimetypes
import posixpath
import re
import secrets
import smtplib
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message, MIMEPart
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, TypeVar

from core.endpoints.base import (
    AuthError,
    ConfigError,
    Endpoint,
    EndpointError,
    FileInfo,
    NotFound,
    OnConflict,
    PermissionDenied,
    TransientError,
    Unreachable,
    WriteStream,
    clean_path,
)
from core.endpoints.email_settings import (
    EmailSecrets,
    EmailSettings,
    ImapSettings,
    SmtpSettings,
    imap_half,
    smtp_half,
)
from core.endpoints.network import network_error
from core.endpoints.settings import EndpointSettings

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

T = TypeVar("T")

FETCH_WINDOW = 1024 * 1024  # encoded bytes per partial FETCH
SIZE_PROBE = 256  # bytes fetched from each end of a base64 part to compute its decoded size
FETCH_BATCH = 200  # messages per metadata FETCH
B64_LINE = 57  # raw bytes per 76-character base64 line
B64_BLOCK = B64_LINE * 8 * 1024  # raw bytes encoded at a time (about 0.45 MiB)
TAKEN = "TradelaneTaken"

_POLICY = email_policy.SMTP
_UID = re.compile(r"[1-9][0-9]{0,9}")
_LITERAL = re.compile(rb"~?\{(\d+)\+?\}$")
_TOKEN = re.compile(
    rb"""[ \t\r\n]*(?:
        (?P<open>\() | (?P<close>\)) |
        "(?P<quoted>(?:[^"\\]|\\.)*)" |
        (?P<atom>[^ \t\r\n()"\[\]{]+(?:\[[^\]]*\][^ \t\r\n()"\[{]*)?)
    )""",
    re.X | re.S,
)
_B64_JUNK = bytes(
    b
    for b in range(256)
    if bytes([b]) not in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
)
_MONTHS = {
    month: number
    for number, month in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


def mutf7(name: str) -> str:
    """IMAP's modified UTF-7 for mailbox names (RFC 3501 section 5.1.3)."""
    out: builtins.list[str] = []
    pending: builtins.list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + encoded.replace(b"/", b",").decode("ascii") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- error mapping ---------------------------------------------------------------------------


def map_network_error(exc: BaseException, what: str, host: str) -> EndpointError:
    """Socket, DNS and TLS failures, in the endpoint error tree."""
    if found := network_error(exc, what, host):
        return found
    if isinstance(exc, OSError):
        return Unreachable(f"{what}: network error: {exc.strerror or exc}")
    return EndpointError(f"{what}: {type(exc).__name__}: {exc}")


def _smtp_text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())


def map_smtp_error(exc: BaseException, what: str, host: str) -> EndpointError:
    """smtplib failures, in the endpoint error tree."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = exc.recipients
        codes = [code for code, _ in refused.values()]
        detail = "; ".join(f"{addr}: {code} {_smtp_text(resp)}" for addr, (code, resp) in refused.items())
        if codes and all(400 <= code < 500 for code in codes):
            return TransientError(f"{what}: recipient deferred: {detail}")
        return PermissionDenied(f"{what}: recipient refused: {detail}")
    if isinstance(exc, smtplib.SMTPResponseException):
        code, text = exc.smtp_code, _smtp_text(exc.smtp_error)
        if isinstance(exc, smtplib.SMTPAuthenticationError) or code in (534, 535, 538):
            return AuthError(f"{what}: login refused: {code} {text}")
        if code == 530:
            return AuthError(f"{what}: server requires authentication: {code} {text}")
        if 400 <= code < 500 or code == -1:
            return TransientError(f"{what}: server answered {code} {text}")
        return EndpointError(f"{what}: server answered {code} {text}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ConfigError(f"{what}: {exc} (check smtp_tls and the port)")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientError(f"{what}: server closed the connection ({exc})")
    if isinstance(exc, smtplib.SMTPException):
        return ConfigError(f"{what}: {exc}")
    return map_network_error(exc, what, host)


def _imap_text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return " ".join(text.split())


def _response_text(data: builtins.list[Any]) -> str:
    parts = [
        item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in data if item
    ]
    return " ".join(" ".join(parts).split())


# --- IMAP response parsing -------------------------------------------------------------------


class Atom(str):
    """An IMAP atom (as opposed to a string): numbers, flags, NIL-free keywords."""


_OPEN, _CLOSE = object(), object()


def _scan(line: bytes) -> Iterator[Any]:
    pos = 0
    while True:
        match = _TOKEN.match(line, pos)
        if match is None:
            if line[pos:].strip():
                raise EndpointError(f"cannot parse IMAP response near {line[pos : pos + 40]!r}")
            return
        pos = match.end()
        if match["open"]:
            yield _OPEN
        elif match["close"]:
            yield _CLOSE
        elif match["quoted"] is not None:
            yield re.sub(rb"\\(.)", rb"\1", match["quoted"])
        else:
            atom = match["atom"].decode("utf-8", "replace")
            yield None if atom.upper() == "NIL" else Atom(atom)


def _tokens(data: Iterable[Any]) -> Iterator[Any]:
    """Tokens of imaplib's untagged data: literals arrive as (line ending in {n}, bytes) tuples."""
    for item in data:
        if isinstance(item, tuple):
            head, literal = item
            yield from _scan(_LITERAL.sub(b"", head))
            yield literal
        elif isinstance(item, bytes):
            yield from _scan(item)


def parse_fetch(data: Iterable[Any]) -> builtins.list[dict[str, Any]]:
    """imaplib FETCH data as one dict per message: upper-case item names to parsed values."""
    stream = _tokens(data)
    messages: builtins.list[dict[str, Any]] = []

    def value(token: Any) -> Any:
        if token is _OPEN:
            items: builtins.list[Any] = []
            for inner in stream:
                if inner is _CLOSE:
                    return items
                items.append(value(inner))
            raise EndpointError("unterminated list in IMAP response")
        return token

    for token in stream:
        if isinstance(token, Atom) and token.isdigit():
            continue  # the message sequence number
        items = value(token)
        if not isinstance(items, builtins.list):
            raise EndpointError(f"unexpected IMAP FETCH response token {token!r}")
        fields = {str(items[i]).upper(): items[i + 1] for i in range(0, len(items) - 1, 2)}
        messages.append(fields)
    return messages


def _str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _pairs(value: Any) -> builtins.list[tuple[str, str]]:
    if not isinstance(value, builtins.list):
        return []
    return [(_str(value[i]).lower(), _str(value[i + 1])) for i in range(0, len(value) - 1, 2)]


def parse_internaldate(value: Any) -> datetime:
    """'17-Jul-1996 02:44:25 -0700' as an aware UTC datetime (month names are always English)."""
    text = _str(value).strip()
    match = re.fullmatch(r"\s*(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", text)
    if not match or match[2].title() not in _MONTHS:
        return datetime.now(UTC)
    day, month, year = int(match[1]), _MONTHS[match[2].title()], int(match[3])
    offset = timedelta(hours=int(match[8]), minutes=int(match[9])) * (-1 if match[7] == "-" else 1)
    local = datetime(year, month, day, int(match[4]), int(match[5]), int(match[6]), tzinfo=timezone(offset))
    return local.astimezone(UTC)


@dataclass(frozen=True)
class Attachment:
    part: str  # IMAP part number, "2" or "1.3"
    name: str  # sanitised, unique within its message
    encoding: str  # lower-case Content-Transfer-Encoding
    encoded_size: int  # octets as stored, from BODYSTRUCTURE


@dataclass
class MailMessage:
    uid: int
    flags: frozenset[str]
    received: datetime
    attachments: builtins.list[Attachment]
    sizes: dict[str, int] = field(default_factory=dict)  # part -> decoded size, once known


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

    def header(kind: str, pairs: builtins.list[tuple[str, str]]) -> str:
        return kind + "".join(f"; {key}={_quote(value)}" for key, value in pairs)

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
        main, sub = _str(leaf[0]).lower(), _str(leaf[1]).lower()
        encoding = _str(leaf[5]).lower() or "7bit"
        try:
            size = int(_str(leaf[6]))
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
            kind = _str(disposition[0]).lower()
            disposition_params = _pairs(disposition[1]) if len(disposition) > 1 else []
        raw = decode_filename(disposition_params, _pairs(leaf[2]))
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


def base64_decoded_size(encoded_size: int, head: bytes, tail: bytes) -> int | None:
    """Exact decoded size of a base64 body from its size, first and last bytes; None if irregular.

    Mailers write base64 in lines of one length L (76 usually) ended by CRLF, the last line
    shorter. So the body is k full lines plus a last line of m characters, with P '=' at the end.
    """
    if encoded_size <= len(head):  # the whole body is in `head`
        alphabet = head.translate(None, _B64_JUNK)
        padding = len(alphabet) - len(alphabet.rstrip(b"="))
        return None if len(alphabet) % 4 else len(alphabet) // 4 * 3 - padding
    stripped = tail.rstrip(b" \t\r\n")
    body = encoded_size - (len(tail) - len(stripped))
    padding = len(stripped) - len(stripped.rstrip(b"="))
    newline = head.find(b"\n")
    if newline <= 0:
        return None
    ending = 2 if head[newline - 1 : newline] == b"\r" else 1
    width = newline - (ending - 1)
    if b"\n" not in stripped:  # the last line is longer than the probe: not regular lines
        return None
    last = len(stripped) - (stripped.rfind(b"\n") + 1)
    full = body - last
    if width <= 0 or full < 0 or full % (width + ending):
        return None
    chars = full // (width + ending) * width + last
    return None if chars % 4 else chars // 4 * 3 - padding


def estimated_size(attachment: Attachment) -> int:
    if attachment.encoding == "base64":
        return attachment.encoded_size * 76 // 78 * 3 // 4
    return attachment.encoded_size


# --- streaming decoders ----------------------------------------------------------------------


class _Decoder:
    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Base64Decoder(_Decoder):
    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        chars = data.translate(None, _B64_JUNK)
        if self._carry:
            chars = self._carry + chars
        cut = len(chars) - len(chars) % 4
        self._carry = chars[cut:]
        return binascii.a2b_base64(memoryview(chars)[:cut]) if cut else b""

    def flush(self) -> bytes:
        rest, self._carry = self._carry.rstrip(b"="), b""
        if not rest:
            return b""
        try:
            return binascii.a2b_base64(rest + b"=" * (-len(rest) % 4))
        except binascii.Error:
            return b""


class _QuotedPrintableDecoder(_Decoder):
    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        data = self._carry + data
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        return binascii.a2b_qp(data[:cut]) if cut else b""

    def flush(self) -> bytes:
        rest, self._carry = self._carry, b""
        return binascii.a2b_qp(rest) if rest else b""


def _decoder(encoding: str) -> _Decoder:
    if encoding == "base64":
        return _Base64Decoder()
    if encoding == "quoted-printable":
        return _QuotedPrintableDecoder()
    return _Decoder()  # 7bit, 8bit, binary and anything unknown pass through


# --- streams ---------------------------------------------------------------------------------


class EmailReadStream(io.RawIOBase):
    """One attachment, fetched window by window with BODY.PEEK and decoded on the way."""

    def __init__(self, endpoint: EmailEndpoint, uid: int, attachment: Attachment, what: str) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._uid = uid
        self._attachment = attachment
        self._what = what
        self._decoder = _decoder(attachment.encoding)
        self._offset = 0
        self._buffer = b""
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        if self._offset >= self._attachment.encoded_size:
            self._buffer, self._pos, self._eof = self._decoder.flush(), 0, True
            return
        length = min(FETCH_WINDOW, self._attachment.encoded_size - self._offset)
        window = self._endpoint._fetch_window(
            self._uid, self._attachment.part, self._offset, length, self._what
        )
        if not window:  # the server has less than BODYSTRUCTURE announced
            self._offset = self._attachment.encoded_size
            return
        self._offset += len(window)
        self._buffer, self._pos = self._decoder.feed(window), 0

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        while self._pos >= len(self._buffer):
            if self._eof:
                return 0
            self._fill()
        count = min(len(view), len(self._buffer) - self._pos)
        view[:count] = self._buffer[self._pos : self._pos + count]
        self._pos += count
        return count

    def close(self) -> None:
        self._buffer = b""
        super().close()


class EmailWriteStream(WriteStream):
    """Spools the file to an anonymous temporary file; commit sends it, abort discards it."""

    def __init__(self, endpoint: EmailEndpoint, rel: str, what: str) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._rel = rel
        self._what = what
        self._digest = hashlib.sha256()
        self.message_id: str | None = None
        try:
            spool = tempfile.TemporaryFile(prefix="tradelane-email-", dir=endpoint.spool_dir)  # noqa: SIM115
            self._spool: BinaryIO = spool  # closed on commit or abort
        except OSError as exc:
            raise EndpointError(f"{what}: cannot create spool file: {exc.strerror or exc}") from None

    def _write(self, data: bytes) -> None:
        try:
            self._spool.write(data)
        except OSError as exc:
            raise EndpointError(f"{self._what}: cannot spool: {exc.strerror or exc}") from None
        self._digest.update(data)

    def _commit(self) -> None:
        try:
            self._spool.flush()
            self.message_id = self._endpoint._send(
                self._spool, self.bytes_written, self._digest.hexdigest(), self._rel, self._what
            )
            self.answer = {"summary": f"sent as {self.message_id}", "message_id": self.message_id}
        finally:
            self._spool.close()

    def _abort(self) -> None:
        self._spool.close()


def _dot_stuffed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """SMTP transparency (RFC 5321 4.5.2); every chunk starts a line and ends with CRLF."""
    for chunk in chunks:
        if chunk.startswith(b"."):
            chunk = b"." + chunk
        yield chunk.replace(b"\r\n.", b"\r\n..")


def base64_length(size: int) -> int:
    """Bytes of `size` raw bytes as CRLF-terminated 76-character base64 lines."""
    full, rest = divmod(size, B64_LINE)
    return full * 78 + ((rest + 2) // 3 * 4 + 2 if rest else 0)


def _base64_lines(spool: BinaryIO) -> Iterator[bytes]:
    spool.seek(0)
    while block := spool.read(B64_BLOCK):
        yield base64.encodebytes(block).replace(b"\n", b"\r\n")


# --- the endpoint ----------------------------------------------------------------------------


class EmailEndpoint(Endpoint):
    """SMTP push and IMAP pull; settings and secrets: core/endpoints/email_settings.py."""

    scheme: ClassVar[str] = "email"
    settings: EmailSettings
    secrets: EmailSecrets

    def __init__(self, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.timeout = self.settings.timeout
        self.verify = self.settings.verify
        self.cafile = self.settings.cafile
        self.spool_dir = self.settings.spool_dir
        self.smtp = smtp_half(self.settings, self.secrets)
        self.imap = imap_half(self.settings, self.secrets)
        self.last_message_id: str | None = None
        self._lock = threading.RLock()
        self._ssl: ssl.SSLContext | None = None
        self._conn: imaplib.IMAP4 | None = None
        self._uidvalidity = ""
        self._keywords = False
        self._read_only = False
        self._fresh = False  # the mailbox was just selected: no need to select again to list
        self._taken_here: dict[tuple[str, int], set[str]] = {}

    # --- shared plumbing ---------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                context = ssl.create_default_context(cafile=self.cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"email cafile {self.cafile!r} cannot be loaded: {exc}") from None
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        return self._ssl

    def uri(self, path: str) -> str:
        rel = clean_path(path, allow_root=True)
        if self.imap is not None:
            return self._imap_uri(rel)
        return self._smtp_uri(rel)

    def _imap_uri(self, rel: str) -> str:
        assert self.imap is not None
        imap = self.imap
        base = f"email:imap://{imap.user}@{imap.host}:{imap.port}/{imap.mailbox}"
        return f"{base}/{rel}" if rel else base

    def _smtp_uri(self, rel: str) -> str:
        assert self.smtp is not None
        smtp = self.smtp
        where = f"email:smtp://{smtp.host}:{smtp.port}" + (f"/{rel}" if rel else "")
        return f"{where} → {', '.join(smtp.recipients)}"

    def check(self) -> None:
        """Connect and log in to SMTP (if configured), then list the mailbox (if configured)."""
        if self.smtp is not None:
            what = self._smtp_uri("")
            with self._smtp_errors(what):
                conn = self._smtp_connect()
                self._smtp_quit(conn)
        if self.imap is not None:
            super().check()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.logout()
                with contextlib.suppress(Exception):
                    conn.shutdown()

    # --- SMTP --------------------------------------------------------------------------------

    def _need_smtp(self, rel: str) -> SmtpSettings:
        if self.smtp is None:
            raise ConfigError(
                f"{self.uri(rel)}: this email endpoint has no smtp_host, so it can only receive; "
                "configure smtp_host, from and to to send"
            )
        return self.smtp

    @contextlib.contextmanager
    def _smtp_errors(self, what: str) -> Iterator[None]:
        assert self.smtp is not None
        try:
            yield
        except EndpointError as exc:
            raise self.redact(exc) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise self.redact(map_smtp_error(exc, what, self.smtp.host)) from exc

    def _smtp_connect(self) -> smtplib.SMTP:
        assert self.smtp is not None
        smtp = self.smtp
        context = self._tls_context() if smtp.tls != "none" else None
        conn: smtplib.SMTP
        if smtp.tls == "ssl":
            conn = smtplib.SMTP_SSL(
                smtp.host, smtp.port, local_hostname=smtp.helo, timeout=self.timeout, context=context
            )
        else:
            conn = smtplib.SMTP(smtp.host, smtp.port, local_hostname=smtp.helo, timeout=self.timeout)
        try:
            conn.ehlo()
            if smtp.tls == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if smtp.user and smtp.password:
                conn.login(smtp.user, smtp.password)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _smtp_quit(conn: smtplib.SMTP) -> None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            conn.quit()
        conn.close()

    def _compose(self, name: str, rel: str, size: int, sha256: str) -> tuple[bytes, bytes, str]:
        """Everything but the attachment's base64 lines: (head, tail, Message-ID)."""
        assert self.smtp is not None
        smtp = self.smtp
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

        text = MIMEPart(policy=_POLICY)
        body = smtp.body.format_map(values).rstrip("\n") + "\n"
        plain = body.isascii() and all(len(line) < 900 for line in body.splitlines())
        text.set_content(body, cte="7bit" if plain else "quoted-printable")

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
                text.as_bytes(),
            ]
        )
        if not head.endswith(b"\r\n"):
            head += b"\r\n"
        head += delimiter + attachment.as_bytes()
        tail = (b"\r\n" if size == 0 else b"") + f"--{boundary}--\r\n".encode("ascii")
        return head, tail, message_id

    def _send(self, spool: BinaryIO, size: int, sha256: str, rel: str, what: str) -> str:
        smtp = self._need_smtp(rel)
        head, tail, message_id = self._compose(posixpath.basename(rel), rel, size, sha256)
        total = len(head) + base64_length(size) + len(tail)
        with self._smtp_errors(what):
            conn = self._smtp_connect()
            try:
                options = []
                if conn.has_extn("size"):
                    limit_text = conn.esmtp_features.get("size", "").strip()
                    limit = int(limit_text) if limit_text.isdigit() else 0
                    if limit and total > limit:
                        raise EndpointError(
                            f"{what}: the message ({total} bytes encoded) exceeds the server's limit "
                            f"of {limit} bytes"
                        )
                    options.append(f"SIZE={total}")
                code, resp = conn.mail(smtp.envelope_from, options)
                if code != 250:
                    raise smtplib.SMTPSenderRefused(code, resp, smtp.envelope_from)
                refused: dict[str, tuple[int, bytes]] = {}
                for recipient in smtp.recipients:
                    code, resp = conn.rcpt(recipient)
                    if code not in (250, 251):
                        refused[recipient] = (code, resp)
                if refused:  # all recipients or none: nothing has been sent yet
                    with contextlib.suppress(smtplib.SMTPException, OSError):
                        conn.rset()
                    raise smtplib.SMTPRecipientsRefused(refused)
                conn.putcmd("data")
                code, resp = conn.getreply()
                if code != 354:
                    raise smtplib.SMTPDataError(code, resp)
                for chunk in _dot_stuffed(self._message_chunks(head, spool, tail)):
                    conn.send(chunk)
                conn.send(b".\r\n")
                code, resp = conn.getreply()
                if code != 250:
                    raise smtplib.SMTPDataError(code, resp)
            finally:
                self._smtp_quit(conn)
        self.last_message_id = message_id
        return message_id

    @staticmethod
    def _message_chunks(head: bytes, spool: BinaryIO, tail: bytes) -> Iterator[bytes]:
        yield head
        yield from _base64_lines(spool)
        yield tail

    # --- IMAP connection ---------------------------------------------------------------------

    def _need_imap(self, rel: str) -> ImapSettings:
        if self.imap is None:
            raise ConfigError(
                f"{self.uri(rel)}: this email endpoint has no imap_host, so it can only send; "
                "configure imap_host (and user/password) to list, read or take files"
            )
        return self.imap

    @contextlib.contextmanager
    def _imap_errors(self, what: str) -> Iterator[None]:
        assert self.imap is not None
        try:
            yield
        except EndpointError as exc:
            raise self.redact(exc) from None
        except imaplib.IMAP4.abort as exc:
            self._drop()
            raise self.redact(Unreachable(f"{what}: IMAP connection lost: {_imap_text(exc)}")) from exc
        except imaplib.IMAP4.error as exc:
            raise self.redact(EndpointError(f"{what}: IMAP error: {_imap_text(exc)}")) from exc
        except OSError as exc:
            self._drop()
            raise self.redact(map_network_error(exc, what, self.imap.host)) from exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.shutdown()

    def _connect(self, what: str) -> imaplib.IMAP4:
        assert self.imap is not None
        imap = self.imap
        conn: imaplib.IMAP4
        if imap.tls == "ssl":
            conn = imaplib.IMAP4_SSL(
                imap.host, imap.port, ssl_context=self._tls_context(), timeout=self.timeout
            )
        else:
            conn = imaplib.IMAP4(imap.host, imap.port, timeout=self.timeout)
        try:
            if imap.tls == "starttls":
                if "STARTTLS" not in conn.capabilities:
                    raise ConfigError(
                        f"{what}: the IMAP server does not offer STARTTLS (check imap_tls and the port)"
                    )
                conn.starttls(ssl_context=self._tls_context())
            self._login(conn, what)
            # imaplib keeps the capabilities from before login; servers add MOVE, UIDPLUS... after.
            typ, data = conn.capability()
            if typ == "OK" and data and data[-1]:
                conn.capabilities = tuple(_str(data[-1]).upper().split())
            self._select(conn, what)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.shutdown()
            raise
        return conn

    def _login(self, conn: imaplib.IMAP4, what: str) -> None:
        assert self.imap is not None
        user, password = self.imap.user, self.imap.password
        capabilities = set(conn.capabilities)
        try:
            if "AUTH=PLAIN" in capabilities:
                conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
            elif "LOGINDISABLED" in capabilities:
                raise ConfigError(f"{what}: the IMAP server refuses to log in without TLS (set imap_tls)")
            else:
                conn.login(_quote(user), password)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            text = _imap_text(exc)
            code = re.match(r"\[([A-Z-]+)", text)
            if code and code[1] == "UNAVAILABLE":
                raise TransientError(f"{what}: IMAP login temporarily unavailable: {text}") from None
            if code and code[1] == "PRIVACYREQUIRED":
                raise ConfigError(f"{what}: the IMAP server requires TLS to log in: {text}") from None
            raise AuthError(f"{what}: IMAP login refused: {text}") from None

    def _select(self, conn: imaplib.IMAP4, what: str) -> None:
        assert self.imap is not None
        mailbox = _quote(mutf7(self.imap.mailbox))
        try:
            typ, data = conn.select(mailbox)
            self._read_only = False
        except imaplib.IMAP4.readonly:
            typ, data = conn.select(mailbox, readonly=True)
            self._read_only = True
        if typ != "OK":
            text = _response_text(data)
            if "NONEXISTENT" in text or "doesn't exist" in text.lower() or "not exist" in text.lower():
                raise ConfigError(f"{what}: mailbox {self.imap.mailbox!r} does not exist")
            raise EndpointError(f"{what}: cannot select mailbox {self.imap.mailbox!r}: {text}")
        _, validity = conn.response("UIDVALIDITY")
        self._uidvalidity = _str(validity[0]) if validity and validity[0] else ""
        _, permanent = conn.response("PERMANENTFLAGS")
        self._keywords = any(item and b"\\*" in item for item in permanent if isinstance(item, bytes))
        self._fresh = True

    def _imap(self, what: str, fn: Callable[[imaplib.IMAP4], T], *, idempotent: bool = True) -> T:
        """Run fn on a logged-in connection with the mailbox selected; one reconnect if it dropped."""
        with self._lock, self._imap_errors(what):
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = self._connect(what)
                conn = self._conn
                try:
                    conn.untagged_responses.clear()  # unsolicited updates we never read
                    return fn(conn)
                except (imaplib.IMAP4.abort, OSError) as exc:
                    if isinstance(exc, ssl.SSLCertVerificationError):
                        raise
                    self._drop()
                    if attempt == 2 or not idempotent:
                        raise
                finally:
                    self._fresh = False
            raise AssertionError("unreachable")

    @staticmethod
    def _check(typ: str, data: builtins.list[Any], what: str, action: str) -> None:
        if typ != "OK":
            raise EndpointError(f"{what}: IMAP {action} failed: {_response_text(data)}")

    # --- IMAP metadata -----------------------------------------------------------------------

    def _search(self, conn: imaplib.IMAP4, what: str) -> builtins.list[int]:
        assert self.imap is not None
        if not self._fresh:
            self._select(conn, what)  # selecting again shows mail that arrived since the last time
        self._fresh = False
        criteria = f"({self.imap.search}) NOT KEYWORD {TAKEN}" if self._keywords else self.imap.search
        typ, data = conn.uid("SEARCH", criteria)
        if typ != "OK":
            raise ConfigError(f"{what}: IMAP search {self.imap.search!r} failed: {_response_text(data)}")
        return sorted({int(uid) for line in data if line for uid in line.split()})

    def _fetch_messages(
        self, conn: imaplib.IMAP4, uids: builtins.list[int], what: str
    ) -> builtins.list[MailMessage]:
        messages: builtins.list[MailMessage] = []
        for start in range(0, len(uids), FETCH_BATCH):
            batch = ",".join(str(uid) for uid in uids[start : start + FETCH_BATCH])
            typ, data = conn.uid("FETCH", batch, "(UID FLAGS INTERNALDATE BODYSTRUCTURE)")
            self._check(typ, data, what, "FETCH")
            for item in parse_fetch(data):
                if "UID" not in item or "BODYSTRUCTURE" not in item:
                    continue  # an unsolicited flag update
                flags = item.get("FLAGS")
                messages.append(
                    MailMessage(
                        uid=int(item["UID"]),
                        flags=frozenset(str(f) for f in flags)
                        if isinstance(flags, builtins.list)
                        else frozenset(),
                        received=parse_internaldate(item.get("INTERNALDATE")),
                        attachments=attachments_of(item["BODYSTRUCTURE"]),
                    )
                )
        for message in messages:
            self._measure(conn, message, what)
        return sorted(messages, key=lambda m: m.uid)

    def _measure(self, conn: imaplib.IMAP4, message: MailMessage, what: str) -> None:
        """Decoded sizes; for base64 parts from two small partial fetches per part, in one FETCH."""
        wanted: dict[str, tuple[Attachment, str, str | None]] = {}
        items: builtins.list[str] = []
        for attachment in message.attachments:
            if attachment.encoding != "base64" or attachment.encoded_size == 0:
                message.sizes[attachment.part] = (
                    0 if attachment.encoding == "base64" else attachment.encoded_size
                )
                continue
            part, encoded = attachment.part, attachment.encoded_size
            head_len = encoded if encoded <= 2 * SIZE_PROBE else SIZE_PROBE
            items.append(f"BODY.PEEK[{part}]<0.{head_len}>")
            tail_key = None
            if encoded > head_len:
                items.append(f"BODY.PEEK[{part}]<{encoded - SIZE_PROBE}.{SIZE_PROBE}>")
                tail_key = f"BODY[{part}]<{encoded - SIZE_PROBE}>"
            wanted[part] = (attachment, f"BODY[{part}]<0>", tail_key)
        if not items:
            return
        typ, data = conn.uid("FETCH", str(message.uid), "(" + " ".join(items) + ")")
        self._check(typ, data, what, "FETCH")
        found: dict[str, Any] = {}
        for item in parse_fetch(data):
            found |= item
        for part, (attachment, head_key, tail_key) in wanted.items():
            head, tail = found.get(head_key), found.get(tail_key) if tail_key else b""
            size: int | None = None
            if isinstance(head, bytes) and isinstance(tail, bytes):
                size = base64_decoded_size(attachment.encoded_size, head, tail)
            message.sizes[part] = estimated_size(attachment) if size is None else size

    def _taken(self, message: MailMessage) -> set[str]:
        if TAKEN in message.flags:
            return {a.part for a in message.attachments}
        marked = {flag[len(TAKEN) + 1 :] for flag in message.flags if flag.startswith(TAKEN + ".")}
        return marked | self._taken_here.get((self._uidvalidity, message.uid), set())

    def _info(self, message: MailMessage, attachment: Attachment) -> FileInfo:
        return FileInfo(
            path=f"{message.uid}/{attachment.name}",
            size=message.sizes.get(attachment.part, estimated_size(attachment)),
            modified=message.received,
            etag=f"{self._uidvalidity}.{message.uid}.{attachment.part}",
        )

    def _split(self, path: str) -> tuple[str, int, str]:
        rel = clean_path(path)
        self._need_imap(rel)
        uid, slash, name = rel.partition("/")
        if not slash or "/" in name or not _UID.fullmatch(uid) or int(uid) >= 2**32:
            raise NotFound(f"no such file: {self.uri(rel)} (email files are '<UID>/<attachment name>')")
        return rel, int(uid), name

    def _locate(self, conn: imaplib.IMAP4, rel: str, uid: int, name: str) -> tuple[MailMessage, Attachment]:
        what = self.uri(rel)
        messages = self._fetch_messages(conn, [uid], what)
        if not messages and not self._fresh:
            # A session sees mail that arrived after its SELECT only once told; NOOP tells it.
            self._check(*conn.noop(), what, "NOOP")
            messages = self._fetch_messages(conn, [uid], what)
        for message in messages:
            if message.uid != uid:
                continue
            taken = self._taken(message)
            for attachment in message.attachments:
                if attachment.name == name and attachment.part not in taken:
                    return message, attachment
        raise NotFound(f"no such file: {what}")

    # --- operations --------------------------------------------------------------------------

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        rel = clean_path(folder, allow_root=True)
        self._need_imap(rel)
        return self._list(rel)

    def _list(self, rel: str) -> Iterator[FileInfo]:
        if rel and not _UID.fullmatch(rel):
            return  # messages are the only folders, named by UID
        what = self.uri(rel)

        def run(conn: imaplib.IMAP4) -> builtins.list[FileInfo]:
            uids = self._search(conn, what)
            if rel:
                uids = [uid for uid in uids if uid == int(rel)]
            infos = []
            for message in self._fetch_messages(conn, uids, what):
                taken = self._taken(message)
                infos += [self._info(message, a) for a in message.attachments if a.part not in taken]
            return sorted(infos, key=lambda info: info.path)

        yield from self._imap(what, run)

    def stat(self, path: str) -> FileInfo:
        rel, uid, name = self._split(path)
        return self._imap(self.uri(rel), lambda conn: self._info(*self._locate(conn, rel, uid, name)))

    def open_read(self, path: str) -> BinaryIO:
        rel, uid, name = self._split(path)
        what = self.uri(rel)
        _, attachment = self._imap(what, lambda conn: self._locate(conn, rel, uid, name))
        return io.BufferedReader(EmailReadStream(self, uid, attachment, what), buffer_size=FETCH_WINDOW)

    def _fetch_window(self, uid: int, part: str, offset: int, length: int, what: str) -> bytes:
        key = f"BODY[{part}]<{offset}>"

        def run(conn: imaplib.IMAP4) -> bytes:
            typ, data = conn.uid("FETCH", str(uid), f"(BODY.PEEK[{part}]<{offset}.{length}>)")
            self._check(typ, data, what, "FETCH")
            for item in parse_fetch(data):
                if key in item:
                    value = item[key]
                    return value if isinstance(value, bytes) else b""
            raise NotFound(f"no such file: {what} (the message is gone)")

        return self._imap(what, run)

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        self.refuse_on_conflict(on_conflict)
        rel = clean_path(path)
        self._need_smtp(rel)
        return EmailWriteStream(self, rel, self._smtp_uri(rel))

    def delete(self, path: str) -> None:
        rel, uid, name = self._split(path)
        what = self.uri(rel)

        def take(conn: imaplib.IMAP4) -> None:
            message, attachment = self._locate(conn, rel, uid, name)
            if self._read_only:
                raise PermissionDenied(f"{what}: the mailbox is read-only for this user")
            remaining = [
                a for a in message.attachments if a.part not in self._taken(message) | {attachment.part}
            ]
            if remaining:
                if self._keywords:
                    typ, data = conn.uid("STORE", str(uid), "+FLAGS.SILENT", f"({TAKEN}.{attachment.part})")
                    self._check(typ, data, what, "STORE")
                else:
                    self._taken_here.setdefault((self._uidvalidity, uid), set()).add(attachment.part)
                return
            self._after_pull(conn, message, what)

        # Not retried on a dropped connection: MOVE and EXPUNGE are not idempotent.
        self._imap(what, take, idempotent=False)

    def _after_pull(self, conn: imaplib.IMAP4, message: MailMessage, what: str) -> None:
        assert self.imap is not None
        imap, uid = self.imap, message.uid
        keyword = f" {TAKEN}" if self._keywords else ""
        flags = "\\Deleted" if imap.after_pull == "delete" else "\\Seen"
        typ, data = conn.uid("STORE", str(uid), "+FLAGS.SILENT", f"({flags}{keyword})")
        self._check(typ, data, what, "STORE")
        if not self._keywords:
            self._taken_here[(self._uidvalidity, uid)] = {a.part for a in message.attachments}
        if imap.after_pull == "move":
            assert imap.move_to is not None
            self._move(conn, uid, imap.move_to, what)
        elif imap.after_pull == "delete":
            self._expunge(conn, uid, what)

    def _move(self, conn: imaplib.IMAP4, uid: int, folder: str, what: str) -> None:
        target = _quote(mutf7(folder))
        command = "MOVE" if "MOVE" in conn.capabilities else "COPY"
        typ, data = conn.uid(command, str(uid), target)
        if typ != "OK" and "TRYCREATE" in _response_text(data):
            typ, data = conn.create(target)
            self._check(typ, data, what, f"CREATE {folder!r}")
            typ, data = conn.uid(command, str(uid), target)
        self._check(typ, data, what, f"{command} to {folder!r}")
        if command == "COPY":
            typ, data = conn.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
            self._check(typ, data, what, "STORE")
            self._expunge(conn, uid, what)

    def _expunge(self, conn: imaplib.IMAP4, uid: int, what: str) -> None:
        if "UIDPLUS" in conn.capabilities:
            typ, data = conn.uid("EXPUNGE", str(uid))
        else:
            typ, data = conn.expunge()
        self._check(typ, data, what, "EXPUNGE")
