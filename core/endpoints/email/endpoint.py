"""`EmailEndpoint`: the SMTP push half and the IMAP pull half behind the one Endpoint protocol."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, ClassVar

from core.endpoints.base import (
    ConfigError,
    Endpoint,
    FileInfo,
    OnConflict,
    WriteStream,
    clean_path,
)
from core.endpoints.email.connection import ConnectionOptions
from core.endpoints.email.imap import ImapReceiver
from core.endpoints.email.settings import EmailSecrets, EmailSettings, imap_half, smtp_half
from core.endpoints.email.smtp import SmtpSender
from core.endpoints.settings import EndpointSettings


class EmailEndpoint(Endpoint):
    """SMTP push and IMAP pull; settings and secrets: core/endpoints/email/settings.py."""

    scheme: ClassVar[str] = "email"
    settings: EmailSettings
    secrets: EmailSecrets

    def __init__(self, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.smtp = smtp_half(self.settings, self.secrets)
        self.imap = imap_half(self.settings, self.secrets)
        # Each half exists only when configured.
        options = ConnectionOptions(self.settings, self.redact)
        self.sender = SmtpSender(self.smtp, options, self.settings.spool_dir) if self.smtp else None
        self.receiver = ImapReceiver(self.imap, options) if self.imap else None

    @property
    def last_message_id(self) -> str | None:
        """The Message-ID of the last message this endpoint sent."""
        return self.sender.last_message_id if self.sender else None

    def uri(self, path: str) -> str:
        rel = clean_path(path, allow_root=True)
        if self.receiver is not None:
            return self.receiver.uri(rel)
        assert self.sender is not None
        return self.sender.uri(rel)

    def check(self) -> None:
        """Connect and log in to SMTP (if configured), then list the mailbox (if configured)."""
        if self.sender is not None:
            self.sender.check()
        if self.receiver is not None:
            super().check()

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.close()

    def _sending(self, rel: str) -> SmtpSender:
        if self.sender is None:
            raise ConfigError(
                f"{self.uri(rel)}: this email endpoint has no smtp_host, so it can only receive; "
                "configure smtp_host, from and to to send"
            )
        return self.sender

    def _receiving(self, path: str, *, allow_root: bool = False) -> tuple[ImapReceiver, str]:
        rel = clean_path(path, allow_root=allow_root)
        if self.receiver is None:
            raise ConfigError(
                f"{self.uri(rel)}: this email endpoint has no imap_host, so it can only send; "
                "configure imap_host (and user/password) to list, read or take files"
            )
        return self.receiver, rel

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        receiver, rel = self._receiving(folder, allow_root=True)
        return receiver.list(rel)

    def stat(self, path: str) -> FileInfo:
        return self._receiving(path)[0].stat(path)

    def open_read(self, path: str) -> BinaryIO:
        return self._receiving(path)[0].open_read(path)

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        self.refuse_on_conflict(on_conflict)
        rel = clean_path(path)
        return self._sending(rel).open_write(rel)

    def delete(self, path: str) -> None:
        self._receiving(path)[0].delete(path)
