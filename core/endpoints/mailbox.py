"""A partner's mailbox as an endpoint: a data flow delivers into it, or reads from it.

Where homes are and which names are reserved is `core.mailbox.layout`'s: a home is
`<mailbox_root>/<account>/<partner>/...`, and writes are staged in `<mailbox_root>/.tmp`, which is
on the same filesystem (so the final `os.replace` is atomic) but outside every partner's home, so a
half-written file never shows up in a partner's listing or an SFTP `ls`.

With the storage on S3 (core/storage.py) a mailbox is the keys under `<prefix>/<account>/<partner>/`
of the storage bucket: `MailboxEndpoint(...)` then gives that S3 endpoint (multipart writes,
invisible until complete; conditional writes keep `rename`), whose paths show as `mailbox://`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator

from core import storage
from core.endpoints.base import ConfigError, Endpoint, clean_path
from core.endpoints.file import FileEndpoint
from core.endpoints.settings import EndpointSettings, KeepBlank
from core.mailbox import layout
from core.mailbox.layout import home as mailbox_root_for
from core.mailbox.layout import temp_dir as mailbox_temp_dir

__all__ = ["DEFAULT_ACCOUNT", "MailboxEndpoint", "mailbox_root_for", "mailbox_temp_dir"]

DEFAULT_ACCOUNT = "home"


def _checked(what: str) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return layout.segment(value, what)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(check)


class MailboxSettings(EndpointSettings):
    """A partner's mailbox (`mailbox:PARTNER`), made by tradelane for data flows into it."""

    partner: Annotated[str, _checked("partner")]
    """The partner whose mailbox it is."""
    account: Annotated[str, _checked("account"), KeepBlank()] = DEFAULT_ACCOUNT
    """The account the partner belongs to."""


class MailboxEndpoint(FileEndpoint):
    """A partner's mailbox; see MailboxSettings. No secrets."""

    scheme: ClassVar[str] = "mailbox"
    # A mailbox is a folder found another way: its settings are not a FileSettings.
    settings: MailboxSettings  # type: ignore[assignment]
    internal: ClassVar[bool] = True
    missing_root_is_empty: ClassVar[bool] = True

    def __new__(  # type: ignore[misc]  # an S3 storage's mailbox is an S3 endpoint
        cls, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None
    ) -> MailboxEndpoint | Endpoint:
        if storage.is_object_store():
            parsed, _ = cls.parse(settings, secrets)
            assert isinstance(parsed, MailboxSettings)
            home = storage.open_home(parsed.account, parsed.partner)
            # What it was opened with, as a mailbox (stored, shown, compared); the bucket, prefix
            # and client were taken from the storage when it was made.
            home.settings = parsed
            return home
        return super().__new__(cls)

    def _root_from_settings(self) -> Path:
        self.partner = self.settings.partner
        self.account = self.settings.account
        return layout.home(self.account, self.partner)

    def _temp_dir_for(self, target: Path) -> Path:
        return layout.temp_dir()

    def uri(self, path: str) -> str:
        return f"mailbox://{self.partner}/{clean_path(path, allow_root=True)}"
