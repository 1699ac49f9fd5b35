"""An account user's home as the API shows it: the home, `b2b` in it, and one folder per outbox.

    home (named after the user's e-mail address)   list
      b2b                                            list: the account's outboxes
        <outbox>                                     list (writes come with connections)

The same tree SFTP and FTP show (mailboxes/user_view.py), from the same mailbox model
(`core.mailbox.access`, `LoginKind.USER`) and the same outboxes (core/mailbox/outboxes.py).
Folder ids are derived as a partner's are (`api.ids`): `uuid5(NS, "<user uid>/")`,
`"<user uid>/b2b"`, `"<user uid>/b2b/<outbox>"`. Any other id, another user's or a partner's
included, answers 404: nothing outside the user's own account is named.
"""

from __future__ import annotations

from datetime import UTC

from api import errors
from api.ids import folder_id, normalize_folder_id
from api.models import FileResource, FolderMeta, FolderResource, Link, Links, SystemProtected
from api.space import Folder, folder_href
from core.db import session_scope
from core.endpoints.base import FileInfo
from core.mailbox import outboxes as outbox_hook
from core.mailbox.access import B2B, HOME, OUTBOX, Action, LoginKind, access_of
from core.models import AccountUser
from core.tenancy import scope_for_login


class UserSpace:
    """The calling account user's home. Methods that touch the store block: call them off the loop."""

    def __init__(self, user: AccountUser) -> None:
        assert user.id is not None
        self.user = user
        self.access = access_of(user, LoginKind.USER)
        self.home = Folder(HOME, folder_id(user.uid, HOME), None)
        self.b2b = Folder(B2B, folder_id(user.uid, B2B), self.home.id)

    def outboxes(self) -> list[Folder]:
        assert self.user.id is not None
        with session_scope() as session:
            scope = scope_for_login(
                session,
                self.user.account_id,
                kind="user",
                principal_id=self.user.id,
                name=self.user.email,
                role=self.user.role,
            )
            names = outbox_hook.outbox_names(session, scope)
        return [Folder(f"{B2B}/{n}", folder_id(self.user.uid, f"{B2B}/{n}"), self.b2b.id) for n in names]

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

    # --- what the user may do ----------------------------------------------------------------

    def children(self, folder: Folder) -> list[Folder]:
        if folder == self.home:
            return [self.b2b]
        if folder == self.b2b:
            return self.outboxes()
        return []

    def actions(self, folder: Folder) -> frozenset[Action]:
        return OUTBOX if folder.subspace == "outbox" else self.access.allowed(folder.name)

    def list_files(self, folder: Folder) -> list[FileInfo]:
        return []  # the home and b2b/ hold folders only; an outbox's listing comes with connections

    def file_resources(self, folder: Folder, infos: list[FileInfo]) -> list[FileResource]:
        return []

    # --- resources ---------------------------------------------------------------------------

    def folder_name(self, folder: Folder) -> str:
        return self.user.email if folder == self.home else folder.name.rpartition("/")[2]

    def folder_resource(self, folder: Folder) -> FolderResource:
        links = Links(self=Link(href=folder_href(folder.id)))
        if folder.parent_id is not None:
            links.parent = Link(href=folder_href(folder.parent_id))
        words = [word for action, word in ((Action.WRITE, "upload"),) if action in self.actions(folder)]
        return FolderResource(
            subspace=folder.subspace,
            id=folder.id,
            name=self.folder_name(folder),
            parent_id=folder.parent_id,
            permissions=words or ["list"],
            system_protected=SystemProtected(delete=True, rename=True),
            _links=links,
            meta=FolderMeta(last_modified=self.user.created_at.replace(tzinfo=UTC)),
        )
