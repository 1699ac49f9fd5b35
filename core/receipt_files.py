"""Where a receipt's bytes live: one private, immutable file per receipt, and the partner's link to it.

Every file taken in is kept under `<mailbox_root>/.store/<yyyy-mm-dd>/<uuid>`: a name that owes
nothing to the file's own name (so no name is too long to keep), in a folder no partner can
reach (mailbox homes are `<mailbox_root>/<account>/<partner>`, and hidden names are refused
there). What the partner sees in `upload/<name>` is a hard link to that file: no copy, and put in
place with a rename, so the partner never sees a partial file. A later upload of the same name
replaces only the link; the earlier receipt's bytes stay where its `storage_path` says, so its
transfers and replays still read them.

Once every data flow that carries a receipt has delivered it, the link leaves `upload/`
(`hide`), if it still is this receipt's (same inode); the kept file is the archive that
`tradelane replay` reads.

Receipts written before this layout name their bytes by the partner's path
(`home/<partner>/upload/<name>`) or by the old archive (`.archive/<day>/<id>-<name>`); `locate`
and `hide` still serve them.

With the storage on S3 (`TRADELANE_STORAGE_URL=s3://…`, core/storage.py) the kept file is the
object `<prefix>/.store/<day>/<uuid>`, streamed in as a multipart upload that is invisible until
it completes and aborted on failure. S3 has no hard links, so nothing is linked into `upload/`:
what the partner sees there is listed from the store (`shown`): for each name, its latest
receipt, while that one is not delivered (`hide` clears its `visible_path`). No copy is made
(a server-side copy per upload would double the writes and the bytes kept), and the listing
cannot disagree with the receipts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import aliased
from sqlmodel import col, select

from core import storage
from core.config import get_settings
from core.db import session_scope
from core.endpoints.base import CHUNK_SIZE, FileInfo, WriteStream
from core.endpoints.file import TEMP_PREFIX, FileWriteStream, create_temp_file, fsync_dir
from core.mailbox import layout
from core.mailbox.layout import LEGACY_ARCHIVE_DIR, STORE_DIR
from core.models import Receipt

__all__ = ["LEGACY_ARCHIVE_DIR", "STORE_DIR"]

log = logging.getLogger(__name__)


def _day(when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return (when.astimezone(UTC) if when.tzinfo else when).strftime("%Y-%m-%d")


def new_path() -> str:
    """A fresh receipt file's path, relative to the mailbox root."""
    return f"{STORE_DIR}/{_day()}/{uuid.uuid4().hex}"


def is_kept(storage_path: str) -> bool:
    return storage_path.startswith(f"{STORE_DIR}/")


def open_write(what: str, *, lean: bool = False) -> tuple[WriteStream, str]:
    """A stream whose bytes, once committed, are a new receipt file; and that file's path.

    Bytes are staged in the mailbox's private temporary folder (same filesystem, so the commit's
    rename is atomic), or streamed into an S3 multipart upload (`lean`: one part in flight);
    `what` names the upload in errors.
    """
    rel = new_path()
    if storage.is_object_store():
        return storage.open_storage(lean=lean).open_write(rel), rel
    target = layout.root() / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = layout.temp_dir()
    staging.mkdir(parents=True, exist_ok=True)
    fd, temp = create_temp_file(staging)
    return FileWriteStream(fd, temp, target, what), rel


# Staged uploads whose bytes were also streamed into the storage bucket as they arrived (an SFTP/FTP
# upload written in order, core/mailbox/staging.py): staged path -> (the kept object, its size).
# `keep_staged` then takes that object instead of copying the file. This process only.
_prekept: dict[Path, tuple[str, int]] = {}
_prekept_lock = threading.Lock()


def prekeep(staged: Path, kept: str, size: int) -> None:
    """Say that `kept` (already committed) holds the `size` bytes staged at `staged`."""
    with _prekept_lock:
        _prekept[staged] = (kept, size)


def forget_prekept(staged: Path) -> None:
    """The upload was not taken in after all: remove its object, unless intake already kept it."""
    with _prekept_lock:
        entry = _prekept.pop(staged, None)
    if entry is not None:
        discard(entry[0])


def keep_staged(staged: Path) -> str:
    """Move a whole file a protocol server staged on the mailbox filesystem into a receipt file
    (into the bucket, streamed, when the storage is S3; the staged file is then removed). A
    file whose bytes already went into the bucket as they arrived (`prekeep`) is not copied."""
    if storage.is_object_store():
        with _prekept_lock:
            entry = _prekept.pop(staged, None)
        if entry is not None:
            if os.stat(staged).st_size == entry[1]:
                staged.unlink()
                return entry[0]
            discard(entry[0])  # the staged file changed since: copy it as it is now
        rel = new_path()
        with storage.open_storage().open_write(rel) as out, staged.open("rb") as source:
            while chunk := source.read(CHUNK_SIZE):
                out.write(chunk)
        staged.unlink()
        return rel
    fd = os.open(staged, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    rel = new_path()
    target = layout.root() / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staged, target)
    fsync_dir(target.parent)
    return rel


def discard(kept: str) -> None:
    """Remove a kept file no receipt names (its upload failed before the receipt was written)."""
    if storage.is_object_store():
        try:
            storage.open_storage().delete(kept)
        except Exception:  # best effort: the failure that got us here matters more
            log.warning("could not remove %s from the storage", kept, exc_info=True)
        return
    with contextlib.suppress(OSError):
        (layout.root() / kept).unlink()


def unkeep(kept: str, staged: Path) -> None:
    """Put a kept file that no receipt names back where a protocol server staged it, best effort."""
    if storage.is_object_store():
        try:
            with storage.open_storage().open_read(kept) as source, staged.open("wb") as out:
                while chunk := source.read(CHUNK_SIZE):
                    out.write(chunk)
        except Exception:
            log.warning("could not put %s back for a resume", kept, exc_info=True)
            return
        discard(kept)
        return
    with contextlib.suppress(OSError):
        os.rename(layout.root() / kept, staged)


def show(kept: str, visible: Path) -> None:
    """Link the kept file at `visible` (the partner's `upload/<name>`), replacing only a link there.

    The link is made under a private temporary name and renamed into place: atomic, no copy.
    On S3 there are no links: nothing is shown (see the module's docstring).
    """
    if storage.is_object_store():
        return
    visible.parent.mkdir(parents=True, exist_ok=True)
    staging = layout.temp_dir()
    staging.mkdir(parents=True, exist_ok=True)
    temp = staging / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    os.link(layout.root() / kept, temp)
    try:
        os.replace(temp, visible)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(visible.parent)


def unshow(kept: str, visible: Path) -> None:
    """Undo `show` for a file no receipt names: remove the link at `visible` if it is to `kept`."""
    if storage.is_object_store():
        return
    try:
        _unlink_if_same(visible, layout.root() / kept)
    except OSError:
        log.warning("could not take %s back out of the partner's folder", visible, exc_info=True)


def locate(receipt: Receipt) -> str:
    """Where the receipt's bytes are, relative to the mailbox root.

    A kept receipt is where it says. An old-layout receipt is in the partner's folder until it is
    delivered; the delivery moves it into a receipt file inside the transaction that records it, so if
    the process is killed between the two, the database still names the old place while the bytes
    are kept: the run is dispatched again and finds them there (or in the old archive).
    """
    if is_kept(receipt.storage_path) or storage.is_object_store():
        return receipt.storage_path
    root = layout.root()
    if (root / receipt.storage_path).exists():
        return receipt.storage_path
    for candidate in (legacy_kept_path(receipt), legacy_archive_path(receipt)):
        if (root / candidate).exists():
            return candidate
    return receipt.storage_path


def hide(receipt: Receipt) -> str | None:
    """Take a delivered receipt's file out of the partner's folder; its bytes stay in its receipt file.

    Only this receipt's own link is removed: a later upload of the same name is another inode and
    stays. Returns the receipt's new `storage_path` when it changed (an old-layout receipt moved
    into a receipt file), else None. Failures are logged, never raised: the delivery stands. With
    `TRADELANE_KEEP_DELIVERED_UPLOADS` the file stays where the partner put it.
    """
    if get_settings().keep_delivered_uploads:
        return None
    if storage.is_object_store():
        receipt.visible_path = None  # listed from the store: no longer shown (see `shown`)
        return None
    try:
        if is_kept(receipt.storage_path):
            if receipt.visible_path:
                _unlink_if_same(layout.root() / receipt.visible_path, layout.root() / receipt.storage_path)
            return None
        if receipt.storage_path.startswith(f"{LEGACY_ARCHIVE_DIR}/"):
            return None
        return _keep_legacy(receipt)
    except OSError:
        log.warning("could not take %s out of the mailbox after delivery", receipt.name, exc_info=True)
        return None


def shown(partner_id: int, folder: str, name: str | None = None) -> list[FileInfo]:
    """With the storage on S3: the files the partner sees in a folder it uploads into (or the one
    called `name`), listed from the store: per name, the latest receipt, unless it was delivered."""
    newer = aliased(Receipt)
    later = (
        select(newer.id)
        .where(newer.partner_id == partner_id, newer.folder == folder, newer.name == Receipt.name)
        .where(col(newer.id) > col(Receipt.id))
    )
    query = select(Receipt).where(
        Receipt.partner_id == partner_id,
        Receipt.folder == folder,
        col(Receipt.visible_path).is_not(None),
        ~later.exists(),
    )
    if name is not None:
        query = query.where(Receipt.name == name)
    with session_scope() as session:
        found = session.exec(query.order_by(col(Receipt.name))).all()
        return [
            FileInfo(f"{folder}/{r.name}", r.size, r.received_at.replace(tzinfo=r.received_at.tzinfo or UTC))
            for r in found
        ]


def _unlink_if_same(visible: Path, kept: Path) -> bool:
    """Remove `visible` if it is a link to `kept`. The link is first renamed away, so a newer upload
    that takes the name at the same moment is put back, never lost from the partner's view."""
    try:
        if not os.path.samestat(os.stat(visible), os.stat(kept)):
            return False
    except FileNotFoundError:
        return False
    staging = layout.temp_dir()
    staging.mkdir(parents=True, exist_ok=True)
    aside = staging / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    try:
        os.rename(visible, aside)
    except FileNotFoundError:
        return False
    try:
        if os.path.samestat(os.stat(aside), os.stat(kept)):
            # No fsync: a removal lost to a power cut only shows a delivered file in upload/ again.
            return True
        # A newer upload took the name between the check and the rename: give it back, unless
        # an even newer one is already there.
        with contextlib.suppress(FileExistsError):
            os.link(aside, visible)
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            aside.unlink()


def _keep_legacy(receipt: Receipt) -> str | None:
    """An old-layout receipt (bytes at the partner's path): link them into a receipt file, then unlink."""
    root = layout.root()
    current = root / receipt.storage_path
    kept = legacy_kept_path(receipt)
    try:
        info = current.stat()
    except FileNotFoundError:
        # Moved by a run killed before it recorded the move: record it now.
        return kept if (root / kept).exists() else None
    # The file was renamed into place before its receipt was written, so a later upload of the same
    # name has a later mtime: only this receipt's own bytes are taken.
    if info.st_size != receipt.size or info.st_mtime > receipt.received_at.timestamp():
        return None
    (root / kept).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.link(current, root / kept)
    fsync_dir((root / kept).parent)
    _unlink_if_same(current, root / kept)
    return kept


def legacy_kept_path(receipt: Receipt) -> str:
    """Where an old-layout receipt is kept once delivered: known from the receipt alone, so a run
    killed before recording the move still finds it."""
    return f"{STORE_DIR}/{_day(receipt.received_at)}/receipt-{receipt.id}"


def legacy_archive_path(receipt: Receipt) -> str:
    return f"{LEGACY_ARCHIVE_DIR}/{_day(receipt.received_at)}/{receipt.id}-{receipt.name}"
