"""A partner's places on disk, from made to retired: its home and its unfinished uploads.

Both are keyed by the partner's name, so a name must never lead a new partner to an old one's
files: a new home always starts empty (whatever is found at its paths is moved aside, never
adopted), and a removed partner's places move out of every partner's reach, into
`<mailbox_root>/.removed/` (a dot-folder no partner path can name), or are deleted. With the
storage on S3 the home's objects in the bucket (`download/`) are moved (or deleted) the same way,
under the bucket's `.removed/`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from core import storage
from core.mailbox import layout


def places(account: str, name: str) -> list[Path]:
    """Where files of the partner called `name` live: its home and its unfinished uploads."""
    return [layout.home(account, name), layout.staging(account, name)]


def make(account: str, name: str) -> list[Path]:
    """Empty folders for a new partner; whatever was at its paths is moved aside (where it went)."""
    set_aside = []
    for place in places(account, name):
        if place.exists() or place.is_symlink():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            target = _unused(layout.removed_dir() / f"found-{name}-{stamp}-{uuid.uuid4().hex[:6]}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(place, target)
            set_aside.append(target)
    if storage.is_object_store():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        aside = f"{layout.REMOVED_DIR}/found-{name}-{stamp}-{uuid.uuid4().hex[:6]}"
        if storage.move_folder(layout.home_relative(account, name), aside):
            set_aside.append(layout.root() / aside)
    home = layout.home(account, name)
    for folder in layout.FOLDERS:
        (home / folder).mkdir(parents=True, exist_ok=True)
    return set_aside


def retire(account: str, name: str, partner_id: int, purge: bool) -> Path | None:
    """Move (or delete, with `purge`) a removed partner's files out of reach; where they went, if kept.

    The unfinished uploads go along, into the kept folder's `.partial/`.
    """
    home, partial = places(account, name)
    if purge:
        for place in (home, partial):
            shutil.rmtree(place, ignore_errors=True)
        if storage.is_object_store():
            storage.delete_folder(layout.home_relative(account, name))
        return None
    target = _unused(layout.removed_dir() / f"partner-{partner_id}")
    if storage.is_object_store() and storage.move_folder(
        layout.home_relative(account, name), f"{layout.REMOVED_DIR}/{target.name}"
    ):
        target.mkdir(parents=True, exist_ok=True)  # (its files are in the bucket, same path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if home.exists():
        os.replace(home, target)
    if partial.exists():
        target.mkdir(parents=True, exist_ok=True)
        os.replace(partial, target / layout.PARTIAL_DIR)
    return target if target.exists() else None


def _unused(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
