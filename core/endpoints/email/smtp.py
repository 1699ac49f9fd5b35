"""The push half: a file spooled while it is written, then sent as one message's attachment over SMTP.

smtplib's `sendmail` wants the whole message as one bytes object, so the transaction is driven by
hand: MAIL FROM (with SIZE when offered, refusing early if over the server's limit), RCPT TO for
each recipient - any refusal aborts the transaction, so a message reaches all recipients or none -
then DATA, the dot-stuffed CRLF lines streamed from `mime.message_chunks`, and ".".
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import smtplib
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from core.endpoints.base import EndpointError, WriteStream
from core.endpoints.email.connection import ConnectionOptions
from core.endpoints.email.decoders import base64_length
from core.endpoints.email.errors import map_smtp_error
from core.endpoints.email.mime import compose, message_chunks
from core.endpoints.email.settings import SmtpSettings


class NoAuthOffered(smtplib.SMTPNotSupportedError):
    """A login was asked for, and the server offers no AUTH on this connection."""


def open_smtp(
    host: str,
    port: int,
    tls: str,
    *,
    context: ssl.SSLContext | None,
    timeout: float,
    helo: str | None = None,
    login: tuple[str, str] | None = None,
) -> smtplib.SMTP:
    """A connected SMTP session: TLS as asked (`none`, `starttls`, `ssl`), then logged in if `login`.

    The one way tradelane opens SMTP (the email endpoint and the invitation e-mail). A login asked
    for on a server that offers no AUTH raises NoAuthOffered: never a silent unauthenticated send.
    """
    conn: smtplib.SMTP
    if tls == "ssl":
        conn = smtplib.SMTP_SSL(host, port, local_hostname=helo, timeout=timeout, context=context)
    else:
        conn = smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout)
    try:
        conn.ehlo()
        if tls == "starttls":
            conn.starttls(context=context)
            conn.ehlo()
        if login is not None:
            if not conn.has_extn("auth"):
                raise NoAuthOffered("SMTP AUTH extension not supported by server.")
            conn.login(*login)
    except BaseException:
        conn.close()
        raise
    return conn


class SmtpSender:
    """Connects, logs in and sends; one connection per message."""

    def __init__(self, smtp: SmtpSettings, options: ConnectionOptions, spool_dir: str | None) -> None:
        self.smtp = smtp
        self.spool_dir = spool_dir
        self._options = options
        self.last_message_id: str | None = None

    def uri(self, rel: str) -> str:
        smtp = self.smtp
        where = f"email:smtp://{smtp.host}:{smtp.port}" + (f"/{rel}" if rel else "")
        return f"{where} → {', '.join(smtp.recipients)}"

    def check(self) -> None:
        """Connect and log in."""
        with self._errors(self.uri("")):
            self._quit(self._connect())

    def open_write(self, rel: str) -> EmailWriteStream:
        return EmailWriteStream(self, rel, self.uri(rel))

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        def translate(exc: Exception) -> EndpointError | None:
            if isinstance(exc, smtplib.SMTPException | OSError):
                return map_smtp_error(exc, what, self.smtp.host)
            return None

        return self._options.errors(translate)

    def _connect(self) -> smtplib.SMTP:
        smtp = self.smtp
        return open_smtp(
            smtp.host,
            smtp.port,
            smtp.tls,
            context=self._options.tls_context() if smtp.tls != "none" else None,
            timeout=self._options.timeout,
            helo=smtp.helo,
            login=(smtp.user, smtp.password) if smtp.user and smtp.password else None,
        )

    @staticmethod
    def _quit(conn: smtplib.SMTP) -> None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            conn.quit()
        conn.close()

    def send(self, spool: BinaryIO, size: int, sha256: str, rel: str, what: str) -> str:
        """Send the spooled file as one message to every recipient; returns its Message-ID."""
        smtp = self.smtp
        head, tail, message_id = compose(smtp, posixpath.basename(rel), rel, size, sha256)
        total = len(head) + base64_length(size) + len(tail)
        with self._errors(what):
            conn = self._connect()
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
                for chunk in dot_stuffed(message_chunks(head, spool, tail)):
                    conn.send(chunk)
                conn.send(b".\r\n")
                code, resp = conn.getreply()
                if code != 250:
                    raise smtplib.SMTPDataError(code, resp)
            finally:
                self._quit(conn)
        self.last_message_id = message_id
        return message_id


def dot_stuffed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """SMTP transparency (RFC 5321 4.5.2); every chunk starts a line and ends with CRLF."""
    for chunk in chunks:
        if chunk.startswith(b"."):
            chunk = b"." + chunk
        yield chunk.replace(b"\r\n.", b"\r\n..")


class EmailWriteStream(WriteStream):
    """Spools the file to an anonymous temporary file; commit sends it, abort discards it."""

    def __init__(self, sender: SmtpSender, rel: str, what: str) -> None:
        super().__init__()
        self._sender = sender
        self._rel = rel
        self._what = what
        self._digest = hashlib.sha256()
        self.message_id: str | None = None
        try:
            spool = tempfile.TemporaryFile(prefix="tradelane-email-", dir=sender.spool_dir)  # noqa: SIM115
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
            self.message_id = self._sender.send(
                self._spool, self.bytes_written, self._digest.hexdigest(), self._rel, self._what
            )
            self.answer = {"summary": f"sent as {self.message_id}", "message_id": self.message_id}
        finally:
            self._spool.close()

    def _abort(self) -> None:
        self._spool.close()
