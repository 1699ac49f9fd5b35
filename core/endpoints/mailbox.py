"""A partner's mailbox: a folder under tradelane's own mailbox storage.

Layout: `<mailbox_root>/<account>/<partner>/...`. Writes are staged in `<mailbox_root>/.tmp`,
which is on the same filesystem (so the final `os.replace` is atomic) but outside every
partner's home, so a half-written file never shows up in a partner's listing or an SFTP `ls`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from core.config import get_settings
from core.endpoints.base import ConfigError, InvalidPath, clean_path
from core.endpoints.file import FileEndpoint

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


class MailboxEndpoint(FileEndpoint):
    """config: {"partner": NAME, "account": "home"}. No secrets."""

    scheme: ClassVar[str] = "mailbox"
    config_keys: ClassVar[frozenset[str] | None] = frozenset({"partner", "account"})
    missing_root_is_empty: ClassVar[bool] = True

    def _root_from_config(self) -> Path:
        if "partner" not in self.config:
            raise ConfigError("mailbox endpoint needs a 'partner'")
        self.partner = _segment(self.config["partner"], "partner")
        self.account = _segment(self.config.get("account", DEFAULT_ACCOUNT), "account")
        return mailbox_root_for(self.account, self.partner)

    def _temp_dir_for(self, target: Path) -> Path:
        return mailbox_temp_dir()

    def uri(self, path: str) -> str:
        return f"mailbox://{self.partner}/{clean_path(path, allow_root=True)}"
