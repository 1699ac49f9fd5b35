"""A partner's mailbox as an endpoint: a data flow delivers into it, or reads from it.

Where homes are and which names are reserved is `core.mailbox.layout`'s: a home is
`<mailbox_root>/<account>/<partner>/...`, and writes are staged in `<mailbox_root>/.tmp`, which is
on the same filesystem (so the final `os.replace` is atomic) but outside every partner's home, so a
half-written file never shows up in a partner's listing or an SFTP `ls`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from core.endpoints.base import ConfigError, clean_path
from core.endpoints.file import FileEndpoint
from core.mailbox import layout
from core.mailbox.layout import home as mailbox_root_for
from core.mailbox.layout import temp_dir as mailbox_temp_dir

__all__ = ["DEFAULT_ACCOUNT", "MailboxEndpoint", "mailbox_root_for", "mailbox_temp_dir"]

DEFAULT_ACCOUNT = "home"


class MailboxEndpoint(FileEndpoint):
    """config: {"partner": NAME, "account": "home"}. No secrets."""

    scheme: ClassVar[str] = "mailbox"
    config_keys: ClassVar[frozenset[str] | None] = frozenset({"partner", "account"})
    missing_root_is_empty: ClassVar[bool] = True

    def _root_from_config(self) -> Path:
        if "partner" not in self.config:
            raise ConfigError("mailbox endpoint needs a 'partner'")
        self.partner = layout.segment(self.config["partner"], "partner")
        self.account = layout.segment(self.config.get("account", DEFAULT_ACCOUNT), "account")
        return layout.home(self.account, self.partner)

    def _temp_dir_for(self, target: Path) -> Path:
        return layout.temp_dir()

    def uri(self, path: str) -> str:
        return f"mailbox://{self.partner}/{clean_path(path, allow_root=True)}"
