"""AS2 as a destination: each file written is sent as one AS2 message to a partner's profile.

Settings (As2Settings): `partner` (the AS2 ID of a profile made with `tradelane as2 partner add`;
required), `content_type`, `subject`.

Writes are spooled to an anonymous file under the AS2 spool directory, capped at
TRADELANE_AS2_MAX_MESSAGE_BYTES (large files are built into a file, core.as2.bigsend), and sent on commit, so
an aborted write sends nothing. A synchronous MDN is verified before commit returns (a negative
or unverifiable one is an error); with an asynchronous MDN, commit returns once the partner took
the message, and a missing MDN later turns the transfer `failed` (see core.as2.send).
AS2 is push-only: listing is empty, reading and deleting are refused.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, ClassVar

from core.endpoints.base import (
    ConfigError,
    Endpoint,
    FileInfo,
    NotFound,
    OnConflict,
    PermissionDenied,
    WriteStream,
    clean_path,
)
from core.endpoints.settings import EndpointSettings


class As2WriteStream(WriteStream):
    def __init__(self, endpoint: As2Endpoint, path: str) -> None:
        from core.as2.settings import as2_settings
        from core.as2.spool import Spool

        super().__init__()
        self._endpoint = endpoint
        self._path = path
        self._spool = Spool(as2_settings().max_message_bytes, "the file to send by AS2")
        self.sent: Any = None

    def _write(self, data: bytes) -> None:
        from core.as2.spool import MessageTooLarge

        try:
            self._spool.write(data)
        except MessageTooLarge as exc:
            raise ConfigError(str(exc)) from None

    def _commit(self) -> None:
        from core.as2 import send

        try:
            self.sent = send.send(
                self._endpoint.partner,
                self._spool.file,
                self._path,
                size=self._spool.size,
                content_type=self._endpoint.content_type,
                subject=self._endpoint.settings.subject,
                account_id=self._endpoint.account_id,
            )
        finally:
            self._spool.close()
        self._endpoint.last_sent = self.sent
        mdn = f"; MDN {self.sent.disposition}" if self.sent.disposition else ""
        self.answer = {
            "summary": f"AS2 {self.sent.message_id}: {self.sent.status}{mdn}",
            "message_id": self.sent.message_id,
            "status": self.sent.status,
            "mic": self.sent.mic,
            "disposition": self.sent.disposition,
        }

    def _abort(self) -> None:
        self._spool.close()


class As2Settings(EndpointSettings):
    """Each file is sent as one AS2 message to a partner's profile (signed, encrypted and with the
    MDN its profile says). Keys and certificates live in the profile, not here."""

    partner: str
    """The partner's AS2 ID: a profile made with `tradelane as2 partner add`."""
    content_type: str = "application/octet-stream"
    """The payload's Content-Type (the default keeps it byte-exact; e.g. application/edi-x12 for
    partners that route on it)."""
    subject: str | None = None
    """The message's Subject (default "AS2 message NAME")."""


class As2Endpoint(Endpoint):
    scheme: ClassVar[str] = "as2"
    settings: As2Settings

    def __init__(self, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.partner = self.settings.partner
        self.content_type = self.settings.content_type
        self.last_sent: Any = None

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        clean_path(folder, allow_root=True)
        return iter(())

    def stat(self, path: str) -> FileInfo:
        raise NotFound(f"as2:{self.partner}/{clean_path(path)}: AS2 is send-only, nothing is stored there")

    def open_read(self, path: str) -> BinaryIO:
        raise PermissionDenied("AS2 is a send-only endpoint: files cannot be read back")

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        self.refuse_on_conflict(on_conflict)
        return As2WriteStream(self, clean_path(path))

    def delete(self, path: str) -> None:
        raise PermissionDenied("AS2 is a send-only endpoint: nothing to delete")

    def uri(self, path: str) -> str:
        from core.as2.send import message_uri

        if self.last_sent is not None and path:
            return message_uri(self.partner, clean_path(path), self.last_sent.message_id)
        return f"as2:{self.partner}/{posixpath.normpath(path) if path else ''}"

    def check(self) -> None:
        """The profile and both certificates are usable and the partner's URL answers HTTP."""
        import httpx

        from core.as2 import profiles
        from core.as2.identity import cert_info
        from core.db import session_scope
        from core.endpoints.http_wire import map_httpx_error

        with session_scope() as session:
            try:
                profile = profiles.require(
                    session, profiles.sending_scope(session, self.account_id), self.partner
                )
                org = profiles.organization_for(session, profile)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            url = profile.url
            for whose, pem in (("partner", profile.certificate), ("our", org.certificate)):
                info = cert_info(pem)
                if info.expired:
                    raise ConfigError(f"{whose} certificate expired on {info.not_after:%Y-%m-%d}")
        try:
            # Any HTTP answer (AS2 servers often say 405 to a GET) shows the URL is reachable.
            httpx.get(url, timeout=10)
        except httpx.HTTPError as exc:
            raise map_httpx_error(exc, "AS2 check", httpx.URL(url).host) from exc
