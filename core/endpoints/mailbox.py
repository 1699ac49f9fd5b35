"""A partner's mailbox: a folder under tradelane's own mailbox storage.

Layout: `<mailbox_root>/<account>/<partner>/...`. Writes are staged in `<mailbox_root>/.tmp`,
which is on the same filesystem (so the final `os.replace` is atomic) but outside every
partner's home, so a half-written file never shows up in a partner's listing or an SFTP `ls`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AfterValidator

from core.config import get_settings
from core.endpoints.base import ConfigError, InvalidPath, clean_path
from core.endpoints.file import FileEndpoint
from core.endpoints.settings import EndpointSettings, KeepBlank

DEFAULT_ACCOUNT = "home"
TEMP_DIR_NAME = ".tmp"


def _segment(value: object, what: str) -> str:
    """One folder name: no slashes, no `..`, not hidden (keeps `.tmp` unreachable)."""
    if not isinstance(value, str):
        raise ConfigError(f"mailbox {what} must be a name")
    try:
        cleaned = clean_path(value)
    except InvalidPath as exc:
        raise ConfigError(f"invalid mailbox {what} {value!r}") from exc
    if cleaned != value or "/" in cleaned or cleaned.startswith("."):
        raise ConfigError(f"invalid mailbox {what} {value!r}")
    return cleaned


def mailbox_root_for(account: str, partner: str) -> Path:
    """The home folder of `partner` in `account` (it may not exist yet)."""
    return get_settings().mailbox_root / _segment(account, "account") / _segment(partner, "partner")


def mailbox_temp_dir() -> Path:
    """Where mailbox writes are staged: same filesystem as every mailbox, visible to none."""
    return get_settings().mailbox_root / TEMP_DIR_NAME


def _checked(what: str) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return _segment(value, what)
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
        return mailbox_root_for(self.account, self.partner)

    def _temp_dir_for(self, target: Path) -> Path:
        return mailbox_temp_dir()

    def uri(self, path: str) -> str:
        return f"mailbox://{self.partner}/{clean_path(path, allow_root=True)}"
