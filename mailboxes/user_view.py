"""An account user's home over SFTP and FTP: a small virtual tree, read-only for now.

    /                list: `b2b/`
    /b2b/            list: one folder per outbox of the account (core/mailbox/outboxes.py)
    /b2b/<outbox>/   list (what may be written and listed there comes with connections)

The user's home holds no files and is not a folder on disk; every path is resolved here against
the account's outboxes, so nothing outside them can be named, and another account's outboxes are
never among them. The folders and actions are the mailbox model's (`core.mailbox.access`,
`LoginKind.USER`), the same the REST API shows.
"""

from __future__ import annotations

import stat as stat_mod
import time

from core.db import session_scope
from core.mailbox import outboxes as outbox_hook
from core.mailbox.access import B2B, HOME, OUTBOX, Action, LoginKind, access_of
from core.models import Receipt
from core.tenancy import scope_for_login
from mailboxes.auth import MailboxAuth, MailboxUser
from mailboxes.view import (
    AlreadyExists,
    DownloadFile,
    Entry,
    Forbidden,
    MailboxView,
    NoSuchFile,
    UploadHandle,
    folder_mode,
)


def view_for(user: MailboxUser, auth: MailboxAuth, remote_addr: str | None, protocol: str) -> MailboxView:
    """The view a login gets: a partner's mailbox, or an account user's home."""
    if user.kind == "user":
        return UserView(user, auth, remote_addr, protocol)
    return MailboxView(user, auth, remote_addr, protocol)


class UserView(MailboxView):
    """One logged-in account user's home, for one protocol session. Methods block (the store)."""

    def __init__(self, user: MailboxUser, auth: MailboxAuth, remote_addr: str | None, protocol: str) -> None:
        # Nothing of a partner's mailbox (home folder, staging) exists for a user: none is set up.
        self.user = user
        self.auth = auth
        self.remote_addr = remote_addr
        self.protocol = protocol
        self.access = access_of(user, LoginKind.USER)
        self.opened_at = time.time()

    # --- the tree -----------------------------------------------------------------------------

    def outboxes(self) -> list[str]:
        with session_scope() as session:
            scope = scope_for_login(
                session,
                self.user.account_id,
                kind="user",
                principal_id=self.user.partner_id,
                name=self.user.name,
                role=self.user.role,
            )
            return outbox_hook.outbox_names(session, scope)

    def _parts(self, path: str, cwd: str = "/") -> list[str]:
        """The normalised path's parts if it names the home, `b2b` or one of the outboxes."""
        virtual = self.normalize(path, cwd)
        parts = [p for p in virtual.split("/") if p]
        if len(parts) <= 1 and parts in ([], [B2B]):
            return parts
        if len(parts) == 2 and parts[0] == B2B and parts[1] in self.outboxes():
            return parts
        raise NoSuchFile(f"no such file or folder: {virtual}")

    def _folder(self, name: str, actions: frozenset[Action]) -> Entry:
        mode = stat_mod.S_IFDIR | folder_mode(actions)
        return Entry(name=name, is_dir=True, size=0, mtime=self.opened_at, mode=mode)

    # --- what SFTP and FTP ask -----------------------------------------------------------------

    def listdir(self, path: str, cwd: str = "/") -> list[Entry]:
        parts = self._parts(path, cwd)
        if not parts:
            return [self._folder(B2B, self.access.allowed(B2B))]
        if len(parts) == 1:
            return [self._folder(name, OUTBOX) for name in self.outboxes()]
        return []

    def stat(self, path: str, cwd: str = "/") -> Entry:
        parts = self._parts(path, cwd)
        if not parts:
            return self._folder("/", self.access.allowed(HOME))
        if len(parts) == 1:
            return self._folder(B2B, self.access.allowed(B2B))
        return self._folder(parts[1], OUTBOX)

    def is_dir(self, path: str, cwd: str = "/") -> bool:
        try:
            self._parts(path, cwd)
        except NoSuchFile:
            return False
        return True

    def open_read(self, path: str, offset: int = 0, cwd: str = "/") -> DownloadFile:
        if self.is_dir(path, cwd):
            raise Forbidden(f"{self.normalize(path, cwd)} is a folder")
        raise NoSuchFile(f"no such file: {self.normalize(path, cwd)}")

    def open_upload(
        self, path: str, offset: int | None = 0, append: bool = False, cwd: str = "/"
    ) -> UploadHandle:
        raise Forbidden(f"cannot create {self.normalize(path, cwd)}: {self._where_files_go()}")

    def remove(self, path: str, cwd: str = "/") -> None:
        self._parts(path, cwd)  # an unknown path is "no such file"; a known one is a folder
        raise Forbidden(f"{self.normalize(path, cwd)} is a folder and cannot be removed")

    def rename(self, old: str, new: str, cwd: str = "/") -> Receipt | None:
        raise Forbidden("nothing can be renamed here: the folders are the account's outboxes")

    def mkdir(self, path: str, cwd: str = "/") -> None:
        if self.is_dir(path, cwd):
            raise AlreadyExists(f"{self.normalize(path, cwd)} already exists")
        raise Forbidden("folders cannot be created: b2b/ holds one folder per outbox of the account")

    def rmdir(self, path: str, cwd: str = "/") -> None:
        raise Forbidden("folders cannot be removed: b2b/ holds one folder per outbox of the account")

    def sweep_partials(self, now: float | None = None) -> int:
        return 0  # a user stages nothing yet

    def _where_files_go(self) -> str:
        outboxes = self.outboxes()
        if not outboxes:
            return "files are sent through the account's outboxes (b2b/<outbox>/), and it has none yet"
        return f"files are sent through the account's outboxes: {', '.join(f'b2b/{o}/' for o in outboxes)}"
