"""The pull half: attachments listed, read and taken from an IMAP mailbox, over one kept session.

Every operation runs through `_imap`: one logged-in connection with the mailbox selected, behind
a lock, reopened once when it dropped (for idempotent commands only). See the package docstring
for paths, sizes and how a message is taken once.
"""

from __future__ import annotations

import builtins
import contextlib
import imaplib
import io
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from core.endpoints.base import (
    AuthError,
    ConfigError,
    EndpointError,
    FileInfo,
    NotFound,
    PermissionDenied,
    TransientError,
    Unreachable,
    clean_path,
)
from core.endpoints.email.connection import ConnectionOptions
from core.endpoints.email.decoders import base64_decoded_size, decoder_for, estimated_size
from core.endpoints.email.errors import imap_error_text, map_network_error
from core.endpoints.email.imap_wire import (
    mutf7,
    parse_fetch,
    parse_internaldate,
    quote,
    response_text,
    text,
)
from core.endpoints.email.mime import Attachment, attachments_of
from core.endpoints.email.settings import ImapSettings

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

T = TypeVar("T")

FETCH_WINDOW = 1024 * 1024  # encoded bytes per partial FETCH
SIZE_PROBE = 256  # bytes fetched from each end of a base64 part to compute its decoded size
FETCH_BATCH = 200  # messages per metadata FETCH
TAKEN = "TradelaneTaken"

_UID = re.compile(r"[1-9][0-9]{0,9}")


@dataclass
class MailMessage:
    uid: int
    flags: frozenset[str]
    received: datetime
    attachments: builtins.list[Attachment]
    sizes: dict[str, int] = field(default_factory=dict)  # part -> decoded size, once known


def _estimated(attachment: Attachment) -> int:
    return estimated_size(attachment.encoding, attachment.encoded_size)


class ImapReceiver:
    """One IMAP mailbox as a folder of "<UID>/<attachment name>" files."""

    def __init__(self, imap: ImapSettings, options: ConnectionOptions) -> None:
        self.imap = imap
        self._options = options
        self._lock = threading.RLock()
        self.connection: imaplib.IMAP4 | None = None
        self._uidvalidity = ""
        self._keywords = False
        self._read_only = False
        self._fresh = False  # the mailbox was just selected: no need to select again to list
        self._taken_here: dict[tuple[str, int], set[str]] = {}

    def uri(self, rel: str) -> str:
        imap = self.imap
        base = f"email:imap://{imap.user}@{imap.host}:{imap.port}/{imap.mailbox}"
        return f"{base}/{rel}" if rel else base

    def close(self) -> None:
        with self._lock:
            conn, self.connection = self.connection, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.logout()
                with contextlib.suppress(Exception):
                    conn.shutdown()

    # --- the session -------------------------------------------------------------------------

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        def translate(exc: Exception) -> EndpointError | None:
            if isinstance(exc, imaplib.IMAP4.abort):
                self._drop()
                return Unreachable(f"{what}: IMAP connection lost: {imap_error_text(exc)}")
            if isinstance(exc, imaplib.IMAP4.error):
                return EndpointError(f"{what}: IMAP error: {imap_error_text(exc)}")
            if isinstance(exc, OSError):
                self._drop()
                return map_network_error(exc, what, self.imap.host)
            return None

        return self._options.errors(translate)

    def _drop(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.shutdown()

    def _connect(self, what: str) -> imaplib.IMAP4:
        imap = self.imap
        conn: imaplib.IMAP4
        if imap.tls == "ssl":
            conn = imaplib.IMAP4_SSL(
                imap.host, imap.port, ssl_context=self._options.tls_context(), timeout=self._options.timeout
            )
        else:
            conn = imaplib.IMAP4(imap.host, imap.port, timeout=self._options.timeout)
        try:
            if imap.tls == "starttls":
                if "STARTTLS" not in conn.capabilities:
                    raise ConfigError(
                        f"{what}: the IMAP server does not offer STARTTLS (check imap_tls and the port)"
                    )
                conn.starttls(ssl_context=self._options.tls_context())
            self._login(conn, what)
            # imaplib keeps the capabilities from before login; servers add MOVE, UIDPLUS... after.
            typ, data = conn.capability()
            if typ == "OK" and data and data[-1]:
                conn.capabilities = tuple(text(data[-1]).upper().split())
            self._select(conn, what)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.shutdown()
            raise
        return conn

    def _login(self, conn: imaplib.IMAP4, what: str) -> None:
        user, password = self.imap.user, self.imap.password
        capabilities = set(conn.capabilities)
        try:
            if "AUTH=PLAIN" in capabilities:
                conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
            elif "LOGINDISABLED" in capabilities:
                raise ConfigError(f"{what}: the IMAP server refuses to log in without TLS (set imap_tls)")
            else:
                conn.login(quote(user), password)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            said = imap_error_text(exc)
            code = re.match(r"\[([A-Z-]+)", said)
            if code and code[1] == "UNAVAILABLE":
                raise TransientError(f"{what}: IMAP login temporarily unavailable: {said}") from None
            if code and code[1] == "PRIVACYREQUIRED":
                raise ConfigError(f"{what}: the IMAP server requires TLS to log in: {said}") from None
            raise AuthError(f"{what}: IMAP login refused: {said}") from None

    def _select(self, conn: imaplib.IMAP4, what: str) -> None:
        mailbox = quote(mutf7(self.imap.mailbox))
        try:
            typ, data = conn.select(mailbox)
            self._read_only = False
        except imaplib.IMAP4.readonly:
            typ, data = conn.select(mailbox, readonly=True)
            self._read_only = True
        if typ != "OK":
            said = response_text(data)
            if "NONEXISTENT" in said or "doesn't exist" in said.lower() or "not exist" in said.lower():
                raise ConfigError(f"{what}: mailbox {self.imap.mailbox!r} does not exist")
            raise EndpointError(f"{what}: cannot select mailbox {self.imap.mailbox!r}: {said}")
        _, validity = conn.response("UIDVALIDITY")
        self._uidvalidity = text(validity[0]) if validity and validity[0] else ""
        _, permanent = conn.response("PERMANENTFLAGS")
        self._keywords = any(item and b"\\*" in item for item in permanent if isinstance(item, bytes))
        self._fresh = True

    def _imap(self, what: str, fn: Callable[[imaplib.IMAP4], T], *, idempotent: bool = True) -> T:
        """Run fn on a logged-in connection with the mailbox selected; one reconnect if it dropped."""
        with self._lock, self._errors(what):
            for attempt in (1, 2):
                if self.connection is None:
                    self.connection = self._connect(what)
                conn = self.connection
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
            raise EndpointError(f"{what}: IMAP {action} failed: {response_text(data)}")

    # --- metadata ----------------------------------------------------------------------------

    def _search(self, conn: imaplib.IMAP4, what: str) -> builtins.list[int]:
        if not self._fresh:
            self._select(conn, what)  # selecting again shows mail that arrived since the last time
        self._fresh = False
        criteria = f"({self.imap.search}) NOT KEYWORD {TAKEN}" if self._keywords else self.imap.search
        typ, data = conn.uid("SEARCH", criteria)
        if typ != "OK":
            raise ConfigError(f"{what}: IMAP search {self.imap.search!r} failed: {response_text(data)}")
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
            message.sizes[part] = _estimated(attachment) if size is None else size

    def _taken(self, message: MailMessage) -> set[str]:
        if TAKEN in message.flags:
            return {a.part for a in message.attachments}
        marked = {flag[len(TAKEN) + 1 :] for flag in message.flags if flag.startswith(TAKEN + ".")}
        return marked | self._taken_here.get((self._uidvalidity, message.uid), set())

    def _info(self, message: MailMessage, attachment: Attachment) -> FileInfo:
        return FileInfo(
            path=f"{message.uid}/{attachment.name}",
            size=message.sizes.get(attachment.part, _estimated(attachment)),
            modified=message.received,
            etag=f"{self._uidvalidity}.{message.uid}.{attachment.part}",
        )

    def _split(self, path: str) -> tuple[str, int, str]:
        rel = clean_path(path)
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

    def list(self, rel: str) -> Iterator[FileInfo]:
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

    def fetch_window(self, uid: int, part: str, offset: int, length: int, what: str) -> bytes:
        """Up to `length` encoded bytes of a part from `offset`, without marking the message \\Seen."""
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
        target = quote(mutf7(folder))
        command = "MOVE" if "MOVE" in conn.capabilities else "COPY"
        typ, data = conn.uid(command, str(uid), target)
        if typ != "OK" and "TRYCREATE" in response_text(data):
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


class EmailReadStream(io.RawIOBase):
    """One attachment, fetched window by window with BODY.PEEK and decoded on the way."""

    def __init__(self, receiver: ImapReceiver, uid: int, attachment: Attachment, what: str) -> None:
        super().__init__()
        self._receiver = receiver
        self._uid = uid
        self._attachment = attachment
        self._what = what
        self._decoder = decoder_for(attachment.encoding)
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
        window = self._receiver.fetch_window(
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
