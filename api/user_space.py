"""An account user's home as the API shows it: the home, `b2b` in it, and one folder per outbox.

    home (named after the user's e-mail address)   list
      b2b                                            list: the account's outboxes
        <outbox>                                     upload (pending: held; active: sent at once;
                                                     revoked: refused); list with the receiver's
                                                     allow-view: the receiver's folder (names,
                                                     sizes, times; never a path, never a download)

The same tree SFTP and FTP show (core/mailbox/user_view.py), from the same mailbox model
(`core.mailbox.access`, `LoginKind.USER`) and the same outboxes (core/mailbox/outboxes.py).
Folder ids are derived as a partner's are (`api.ids`): `uuid5(NS, "<user uid>/")`,
`"<user uid>/b2b"`, `"<user uid>/b2b/<outbox>"`. Any other id, another user's or a partner's
included, answers 404: nothing outside the user's own account is named.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

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
    SystemProtected,
)
from api.space import FileRef, Folder, file_href, folder_href
from core.b2b import connections
from core.db import session_scope
from core.endpoints.base import FileInfo
from core.errors import Conflict
from core.mailbox import outboxes as outbox_hook
from core.mailbox.access import B2B, HOME, Action, LoginKind, access_of
from core.mailbox.outboxes import Outbox
from core.models import AccountUser
from core.tenancy import Scope, scope_for_login


class UserSpace:
    """The calling account user's home. Methods that touch the store block: call them off the loop."""

    def __init__(self, user: AccountUser) -> None:
        assert user.id is not None
        self.user = user
        self.access = access_of(user, LoginKind.USER)
        self.home = Folder(HOME, folder_id(user.uid, HOME), None)
        self.b2b = Folder(B2B, folder_id(user.uid, B2B), self.home.id)

    def scope_in(self, session: Session) -> Scope:
        assert self.user.id is not None
        return scope_for_login(
            session,
            self.user.account_id,
            kind="user",
            principal_id=self.user.id,
            name=self.user.email,
            role=self.user.role,
        )

    def scope(self) -> Scope:
        with session_scope() as session:
            return self.scope_in(session)

    def outboxes(self) -> list[Folder]:
        with session_scope() as session:
            names = outbox_hook.outbox_names(session, self.scope_in(session))
        return [Folder(f"{B2B}/{n}", folder_id(self.user.uid, f"{B2B}/{n}"), self.b2b.id) for n in names]

    def outbox(self, folder: Folder) -> Outbox:
        """The outbox behind an outbox folder (404 once its connection is declined or expired)."""
        with session_scope() as session:
            box = outbox_hook.outbox_named(session, self.scope_in(session), self.folder_name(folder))
        if box is None or folder.subspace != "outbox":
            raise errors.NotFound(f"no folder with id {folder.id}")
        return box

    # --- resolving ids -----------------------------------------------------------------------

    def folder(self, value: str) -> Folder:
        """The user's folder with id `value`; 404 for any other."""
        canonical = normalize_folder_id(value)
        for folder in (self.home, self.b2b):
            if canonical == folder.id:
                return folder
        if canonical is not None:
            for outbox in self.outboxes():
                if canonical == outbox.id:
                    return outbox
        raise errors.NotFound(f"no folder with id {value}")

    def file(self, value: str) -> FileRef:
        """A file listed in one of the user's outboxes (the receiver's file, seen through the
        connection); 404 for any other id."""
        parsed = parse_file_id(value)
        if parsed is None:
            raise errors.NotFound(f"no file with id {value}")
        folder = self.folder(parsed[0])
        if folder.subspace != "outbox":
            raise errors.NotFound(f"no file with id {value}")
        return FileRef(folder, parsed[1])

    def stat(self, ref: FileRef) -> FileInfo:
        """The listed file's name, size and time (the allow-view rule applies, as to the listing)."""
        for info in self.list_files(ref.folder):
            if info.name == ref.name:
                return info
        raise errors.NotFound(f"no file named {ref.name!r} in {self.folder_name(ref.folder)}")

    # --- what the user may do ----------------------------------------------------------------

    def children(self, folder: Folder) -> list[Folder]:
        if folder == self.home:
            return [self.b2b]
        if folder == self.b2b:
            return self.outboxes()
        return []

    def actions(self, folder: Folder) -> frozenset[Action]:
        if folder.subspace == "outbox":
            return self.outbox(folder).actions(self.scope())
        return self.access.allowed(folder.name)

    def list_files(self, folder: Folder) -> list[FileInfo]:
        """The home and b2b/ hold folders only; an outbox lists the receiver's folder, through the
        connection, with the receiver's allow-view (403 with its words otherwise)."""
        if folder.subspace != "outbox":
            return []
        box = self.outbox(folder)
        try:
            with session_scope() as session:
                listed = connections.receiver_listing(session, self.scope_in(session), box.connection_id)
        except Conflict:
            return []  # pending or revoked: there is no receiving folder to show
        return [FileInfo(f.name, f.size, f.modified) for f in sorted(listed, key=lambda f: f.name)]

    def file_resources(self, folder: Folder, infos: list[FileInfo]) -> list[FileResource]:
        ancestors = [self.home, self.b2b, folder]
        path = [PathEntry(href=folder_href(f.id), id=f.id, name=self.folder_name(f)) for f in ancestors]
        resources = []
        for info in infos:
            ref_id = file_id(folder.id, info.name)
            resources.append(
                FileResource(
                    subspace="outbox",
                    id=ref_id,
                    parent_id=folder.id,
                    name=info.name,
                    length=info.size,
                    path=path,
                    permissions=[],  # the receiver's file: seen, never read or changed
                    system_protected=SystemProtected(delete=True, rename=True),
                    _links=Links(self=Link(href=file_href(ref_id)), parent=Link(href=folder_href(folder.id))),
                    meta=FileMeta(last_modified=_aware(info.modified)),
                )
            )
        return resources

    # --- resources ---------------------------------------------------------------------------

    def folder_name(self, folder: Folder) -> str:
        return self.user.email if folder == self.home else folder.name.rpartition("/")[2]

    def folder_resource(self, folder: Folder) -> FolderResource:
        links = Links(self=Link(href=folder_href(folder.id)))
        if folder.parent_id is not None:
            links.parent = Link(href=folder_href(folder.parent_id))
        pairs = ((Action.LIST, "list"), (Action.WRITE, "upload"))
        words = [word for action, word in pairs if action in self.actions(folder)]
        return FolderResource(
            subspace=folder.subspace,
            id=folder.id,
            name=self.folder_name(folder),
            parent_id=folder.parent_id,
            permissions=words,
            system_protected=SystemProtected(delete=True, rename=True),
            _links=links,
            meta=FolderMeta(last_modified=self.user.created_at.replace(tzinfo=UTC)),
        )


def _aware(value: datetime) -> datetime:
    """Stored times are naive UTC; storage listings give aware ones."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
