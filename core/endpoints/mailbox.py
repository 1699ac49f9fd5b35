"""A partner's mailbox as an endpoint: a data flow delivers into it, or reads from it.

Where homes are and which names are reserved is `core.mailbox.layout`'s: a home is
`<mailbox_root>/<account>/<partner>/...`, and writes are staged in `<mailbox_root>/.tmp`, which is
on the same filesystem (so the final `os.replace` is atomic) but outside every partner's home, so a
half-written file never shows up in a partner's listing or an SFTP `ls`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AfterValidator

from core.endpoints.base import ConfigError, clean_path
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

    def _root_from_settings(self) -> Path:
        self.partner = self.settings.partner
        self.account = self.settings.account
        return layout.home(self.account, self.partner)

    def _temp_dir_for(self, target: Path) -> Path:
        return layout.temp_dir()

    def uri(self, path: str) -> str:
        return f"mailbox://{self.partner}/{clean_path(path, allow_root=True)}"
