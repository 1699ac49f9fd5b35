"""One partner's home as the API shows it: three folders, the files in them, who may do what.

The home folder holds `upload/` (the partner writes; files there are carried away by data
flows) and `download/` (the partner reads, and deletes if allowed): the folders and actions of the
one mailbox model (`core.mailbox.access`), in Cleo's permission words. Ids come from `api.ids`;
every id a client sends is resolved here against the calling partner, so another partner's
folder or file answers 403 and an unknown one 404.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO, Final, cast

from sqlmodel import select

from api import errors
from api.ids import file_id, folder_id, normalize_folder_id, parse_file_id
from api.models import (
    FileMeta,
    FileResource,
    FolderMeta,
    FolderResource,
    Link,
    Links,
    PathEntry,
    Subspace,
    SystemProtected,
)
from core import receipt_files, storage
from core.db import session_scope
from core.endpoints.base import Endpoint, FileInfo, InvalidPath
from core.endpoints.base import NotFound as StorageNotFound
from core.endpoints.mailbox import MailboxEndpoint
from core.mailbox import layout
from core.mailbox.access import HOME, Action, access_of
from core.mailbox.layout import DOWNLOAD, FOLDERS, UPLOAD
from core.models import Partner, Receipt
from core.tenancy import account_name

__all__ = ["DOWNLOAD", "HOME", "UPLOAD", "FileRef", "Folder", "Space"]

FOLDER_NAMES: Final = (HOME, *FOLDERS)
# Cleo's permission words for what may be done in a folder (a folder allowing none of them "list"s),
# and with the files in it (no resume over REST: "upload" is a folder's word only).
FOLDER_WORDS: Final = ((Action.WRITE, "upload"), (Action.READ, "download"), (Action.DELETE, "delete"))
FILE_WORDS: Final = ((Action.READ, "download"), (Action.DELETE, "delete"))
# A receipt's hash still describes the file if the file was not written after it was received.
_RECEIPT_SLACK = timedelta(seconds=2)


def folder_href(folder_id: str) -> str:
    return f"/api/folders/{folder_id}"


def file_href(file_id: str) -> str:
    return f"/api/files/{file_id}"


@dataclass(frozen=True)
class Folder:
    """A folder of a home, named by its path from the home: "" (the home itself), "upload",
    "download"; for an account user "b2b" and "b2b/<outbox>" (api/user_space.py)."""

    name: str
    id: str
    parent_id: str | None

    @property
    def subspace(self) -> Subspace | None:
        if self.name in ("upload", "download", "b2b"):
            return cast(Subspace, self.name)
        return "outbox" if self.name.startswith("b2b/") else None


@dataclass(frozen=True)
class FileRef:
    folder: Folder
    name: str

    @property
    def path(self) -> str:
        return f"{self.folder.name}/{self.name}"

    @property
    def id(self) -> str:
        return file_id(self.folder.id, self.name)


class Space:
    """The calling partner's home. Methods that touch disk or the store block: call them off the loop."""

    def __init__(self, partner: Partner) -> None:
        self.partner = partner
        self.home = Folder(HOME, folder_id(partner.uid, HOME), None)
        self.upload = Folder(UPLOAD, folder_id(partner.uid, UPLOAD), self.home.id)
        self.download = Folder(DOWNLOAD, folder_id(partner.uid, DOWNLOAD), self.home.id)
        self._by_id = {f.id: f for f in (self.home, self.upload, self.download)}
        self.access = access_of(partner)

    @functools.cached_property
    def account(self) -> str:
        return account_name(self.partner.account_id)

    @functools.cached_property
    def endpoint(self) -> Endpoint:
        # A folder, or keys in the storage bucket (core/endpoints/mailbox.py).
        return MailboxEndpoint({"partner": self.partner.name, "account": self.account})

    # --- resolving ids -----------------------------------------------------------------------

    def own_folder(self, value: str) -> Folder | None:
        """The caller's folder with id `value`, if it is one; reads no database (the event loop may ask)."""
        canonical = normalize_folder_id(value)
        return self._by_id.get(canonical) if canonical is not None else None

    def folder(self, value: str) -> Folder:
        """The caller's folder with id `value`; 403 if it is another partner's, else 404."""
        if (own := self.own_folder(value)) is not None:
            return own
        canonical = normalize_folder_id(value)
        if canonical is not None and self._belongs_to_another_partner(canonical):
            raise errors.Forbidden("this folder belongs to another partner")
        raise errors.NotFound(f"no folder with id {value}")

    def file(self, value: str) -> FileRef:
        """The caller's file with id `value` (it may not exist); 403 if another partner's, else 404."""
        parsed = parse_file_id(value)
        if parsed is None:
            raise errors.NotFound(f"no file with id {value}")
        folder_value, name = parsed
        try:
            folder = self.folder(folder_value)
        except errors.Forbidden:
            raise errors.Forbidden("this file belongs to another partner") from None
        except errors.NotFound:
            raise errors.NotFound(f"no file with id {value}") from None
        if folder is self.home:
            raise errors.NotFound(f"no file with id {value}")
        return FileRef(folder, name)

    def _belongs_to_another_partner(self, canonical: str) -> bool:
        with session_scope() as session:
            uids = session.exec(
                select(Partner.uid).where(
                    Partner.account_id == self.partner.account_id, Partner.id != self.partner.id
                )
            ).all()
        return any(folder_id(uid, name) == canonical for uid in uids for name in FOLDER_NAMES)

    # --- what the partner may do -------------------------------------------------------------

    def children(self, folder: Folder) -> list[Folder]:
        if folder is not self.home:
            return []
        return [f for name in self.access.folders for f in self._by_id.values() if f.name == name]

    def folder_permissions(self, folder: Folder) -> list[str]:
        allowed = self.access.allowed(folder.name)
        return [word for action, word in FOLDER_WORDS if action in allowed] or ["list"]

    def file_permissions(self, folder: Folder) -> list[str]:
        # Files in upload/ belong to the data flows now: the partner may not read or delete them.
        allowed = self.access.allowed(folder.name)
        return [word for action, word in FILE_WORDS if action in allowed]

    def can_upload(self, folder: Folder) -> bool:
        return self.access.allows(folder.name, Action.WRITE)

    def can_download(self, folder: Folder) -> bool:
        return self.access.allows(folder.name, Action.READ)

    def can_delete(self, folder: Folder) -> bool:
        return self.access.allows(folder.name, Action.DELETE)

    # --- storage -----------------------------------------------------------------------------

    def _shown(self, folder: Folder) -> bool:
        """With the storage on S3 a folder the partner uploads into is listed from the store."""
        return storage.is_object_store() and self.access.allows(folder.name, Action.WRITE)

    def list_files(self, folder: Folder) -> list[FileInfo]:
        # The home folder shows only its two folders, never stray files at its top level.
        if folder is self.home:
            return []
        if self._shown(folder):
            assert self.partner.id is not None
            return receipt_files.shown(self.partner.id, folder.name)
        return list(self.endpoint.list(folder.name))

    def stat(self, ref: FileRef) -> FileInfo:
        if self._shown(ref.folder):
            assert self.partner.id is not None
            found = receipt_files.shown(self.partner.id, ref.folder.name, ref.name)
            if not found:
                raise self._no_file(ref)
            return found[0]
        try:
            return self.endpoint.stat(ref.path)
        except (StorageNotFound, InvalidPath):
            raise self._no_file(ref) from None

    def open_read(self, ref: FileRef) -> tuple[BinaryIO, int]:
        """An open binary stream of the file and its size."""
        try:
            handle = self.endpoint.open_read(ref.path)
        except (StorageNotFound, InvalidPath):
            raise self._no_file(ref) from None
        try:
            size = os.fstat(handle.fileno()).st_size
        except (AttributeError, OSError, io.UnsupportedOperation):
            size = self.stat(ref).size
        return handle, size

    def delete(self, ref: FileRef) -> None:
        try:
            self.endpoint.delete(ref.path)
        except (StorageNotFound, InvalidPath):
            raise self._no_file(ref) from None

    def _no_file(self, ref: FileRef) -> errors.NotFound:
        return errors.NotFound(f"no file named {ref.name!r} in {ref.folder.name}/")

    def known_hashes(self, folder: Folder, infos: list[FileInfo]) -> dict[str, str]:
        """SHA-256 of the files that arrived through intake and were not rewritten since."""
        names = [info.name for info in infos]
        if not names:
            return {}
        with session_scope() as session:
            rows = session.exec(
                select(Receipt)
                .where(
                    Receipt.partner_id == self.partner.id,
                    Receipt.folder == folder.name,
                    Receipt.name.in_(names),  # type: ignore[attr-defined]
                )
                .order_by(Receipt.id)  # type: ignore[arg-type]
            ).all()
        latest = {row.name: row for row in rows}
        hashes = {}
        for info in infos:
            row = latest.get(info.name)
            if row is None or row.size != info.size:
                continue
            if info.modified <= row.received_at.replace(tzinfo=UTC) + _RECEIPT_SLACK:
                hashes[info.name] = row.sha256
        return hashes

    # --- resources ---------------------------------------------------------------------------

    def _folder_modified(self, folder: Folder) -> datetime:
        try:
            mtime = os.stat(layout.home(self.account, self.partner.name) / folder.name).st_mtime
        except OSError:
            return self.partner.created_at.replace(tzinfo=UTC)
        return datetime.fromtimestamp(mtime, tz=UTC)

    def folder_name(self, folder: Folder) -> str:
        return folder.name or self.partner.name

    def folder_resource(self, folder: Folder) -> FolderResource:
        links = Links(self=Link(href=folder_href(folder.id)))
        if folder.parent_id is not None:
            links.parent = Link(href=folder_href(folder.parent_id))
        return FolderResource(
            subspace=folder.subspace,
            id=folder.id,
            name=self.folder_name(folder),
            parent_id=folder.parent_id,
            permissions=self.folder_permissions(folder),
            system_protected=SystemProtected(delete=True, rename=True),
            _links=links,
            meta=FolderMeta(last_modified=self._folder_modified(folder)),
        )

    def file_resource(
        self, folder: Folder, name: str, size: int, modified: datetime, sha256: str | None
    ) -> FileResource:
        ref = FileRef(folder, name)
        permissions = self.file_permissions(folder)
        ancestors = [self.home, folder]
        assert folder.subspace is not None, "files live in upload/ or download/"
        return FileResource(
            subspace=folder.subspace,
            id=ref.id,
            parent_id=folder.id,
            name=name,
            length=size,
            path=[PathEntry(href=folder_href(f.id), id=f.id, name=self.folder_name(f)) for f in ancestors],
            permissions=permissions,
            system_protected=SystemProtected(delete="delete" not in permissions, rename=True),
            _links=Links(self=Link(href=file_href(ref.id)), parent=Link(href=folder_href(folder.id))),
            meta=FileMeta(last_modified=modified, sha256=sha256),
        )

    def file_resources(self, folder: Folder, infos: list[FileInfo]) -> list[FileResource]:
        hashes = self.known_hashes(folder, infos)
        return [
            self.file_resource(folder, info.name, info.size, info.modified, hashes.get(info.name))
            for info in infos
        ]
