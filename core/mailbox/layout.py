"""Where mailboxes live on disk, and the names in them that no partner may use.

    <mailbox_root>/
      <account>/<partner>/          a partner's home: one folder per entry of `FOLDERS`
      .store/<day>/<uuid>           every receipt's bytes, immutable (core/receipt_files.py)
      .tmp/                         writes being staged, on the same filesystem so renames are atomic
      .partial/<account>/<partner>/<folder>/<name>
                                    unfinished SFTP/FTP uploads, kept for a resume (staging.py)
      .peer/<connection uid>/<uid>  files another instance is pushing to us (core/b2b/peer_upload.py)
      .removed/                     homes of removed partners, and whatever was found at a new one's
      .archive/<day>/<id>-<name>    where delivered files went before `.store` (old receipts)

Every reserved folder starts with a dot, and no account, partner or file name may (`segment`,
`core.intake.check_file_name`), so no partner path can ever name one. Which folders a login sees
in its home and what it may do in each is `access.py`'s table, not this module's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from core.config import get_settings
from core.endpoints.base import ConfigError, InvalidPath, clean_path
from core.endpoints.tempname import PREFIX as TRADELANE_TEMP_PREFIX

# A partner's folders: it writes into `upload/` (data flows carry what arrives there away) and
# reads from `download/` (data flows deliver there). Listing order.
UPLOAD: Final = "upload"
DOWNLOAD: Final = "download"
FOLDERS: Final = (DOWNLOAD, UPLOAD)
# What a data flow reads from a partner by default (`--source mailbox:NAME`), and where one that
# delivers into a mailbox puts a file by default (`--dest mailbox:NAME`).
SOURCE_FOLDER: Final = UPLOAD
DELIVERY_PATH: Final = f"{DOWNLOAD}/{{name}}"

STORE_DIR: Final = ".store"
TEMP_DIR: Final = ".tmp"
PARTIAL_DIR: Final = ".partial"
PEER_DIR: Final = ".peer"
REMOVED_DIR: Final = ".removed"
LEGACY_ARCHIVE_DIR: Final = ".archive"
RESERVED_DIRS: Final = frozenset(
    {STORE_DIR, TEMP_DIR, PARTIAL_DIR, PEER_DIR, REMOVED_DIR, LEGACY_ARCHIVE_DIR}
)

# Uploads to names ending so (WinSCP, rclone, scripts: upload as `x.part`, rename to `x`) wait,
# staged, to be renamed to their final name; so do another tradelane's temporary names
# (core/endpoints/tempname.py), the one hidden name a partner may write.
IN_PROGRESS_SUFFIXES: Final = (".part", ".partial", ".filepart", ".tmp")


def root() -> Path:
    return get_settings().mailbox_root


def segment(value: object, what: str) -> str:
    """One folder name (an account's or a partner's): no slashes, no `..`, not hidden."""
    if not isinstance(value, str):
        raise ConfigError(f"mailbox {what} must be a name")
    try:
        cleaned = clean_path(value)
    except InvalidPath as exc:
        raise ConfigError(f"invalid mailbox {what} {value!r}") from exc
    if cleaned != value or "/" in cleaned or cleaned.startswith("."):
        raise ConfigError(f"invalid mailbox {what} {value!r}")
    return cleaned


def home(account: str, partner: str) -> Path:
    """The home folder of `partner` in `account` (it may not exist yet)."""
    return root() / home_relative(account, partner)


def home_relative(account: str, partner: str) -> str:
    """The home relative to the mailbox root, as receipts' paths begin (`home/acme`)."""
    return f"{segment(account, 'account')}/{segment(partner, 'partner')}"


def staging(account: str, partner: str) -> Path:
    """Where the partner's unfinished SFTP/FTP uploads wait for a resume, outside its home."""
    return root() / PARTIAL_DIR / segment(account, "account") / segment(partner, "partner")


def temp_dir() -> Path:
    """Where mailbox writes are staged: same filesystem as every mailbox, visible to none."""
    return root() / TEMP_DIR


def removed_dir() -> Path:
    return root() / REMOVED_DIR


def is_hidden(name: str) -> bool:
    """Names no listing shows and no partner path reaches (reserved folders, dot-files)."""
    return name.startswith(".")


def is_in_progress_name(name: str) -> bool:
    """An upload to this name is not finished when it completes: it waits for a rename."""
    return name.lower().endswith(IN_PROGRESS_SUFFIXES) or name.startswith(TRADELANE_TEMP_PREFIX)


def is_tradelane_temp_name(name: str) -> bool:
    return name.startswith(TRADELANE_TEMP_PREFIX)


def carried_name(name: str) -> str:
    """The name a file will have once renamed: another tradelane's temporary name carries it."""
    return name.removeprefix(TRADELANE_TEMP_PREFIX)
