"""An account user's home over SFTP, FTP (and the portal): a small virtual tree of the account's outboxes.

    /                        list: `b2b/`
    /b2b/                    list: one folder per outbox of the account (core/mailbox/outboxes.py)
    /b2b/<outbox>/           write (pending: held; active: carried at once; revoked: refused);
                             list only with the receiver's allow-view: the receiver's folder,
                             names, sizes and times, never a file to read back
    /b2b/<outbox>/<file>     an upload (staged, resumable; taken in when complete)

The user's home holds no files and is not a folder on disk; every path is resolved here against
the account's outboxes, so nothing outside them can be named, and another account's outboxes are
never among them. Uploads are staged as a partner's are (core/mailbox/staging.py, under the user's
own staging folder) and taken in by `core.b2b.outbox.take_staged` (intake, protocol `b2b`).
"""

from __future__ import annotations

import stat as stat_mod
import time
from pathlib import Path

from sqlmodel import Session

from core import intake
from core.b2b import connections
from core.b2b import outbox as b2b_outbox
from core.config import get_settings
from core.db import session_scope
from core.errors import Conflict, NotFound, StatusError
from core.limits import LimitReached
from core.login import LoginUser
from core.mailbox import layout
from core.mailbox import outboxes as outbox_hook
from core.mailbox.access import B2B, HOME, Action, LoginKind, access_of
from core.mailbox.doors import Doors
from core.mailbox.layout import IN_PROGRESS_SUFFIXES
from core.mailbox.outboxes import Outbox
from core.mailbox.staging import Staging
from core.mailbox.view import (
    AlreadyExists,
    DownloadFile,
    Entry,
    Forbidden,
    InvalidName,
    MailboxError,
    MailboxView,
    NoSuchFile,
    TooManyOpenFiles,
    UploadHandle,
    file_mode,
    folder_mode,
    intake_refusals,
)
from core.models import Receipt
from core.tenancy import Scope, scope_for_login


def view_for(user: LoginUser, auth: Doors, remote_addr: str | None, protocol: str) -> MailboxView:
    """The view a login gets: a partner's mailbox, or an account user's home."""
    if user.kind == "user":
        return UserView(user, auth, remote_addr, protocol)
    return MailboxView(user, auth, remote_addr, protocol)


def _refusal(exc: StatusError) -> MailboxError:
    """A core refusal as the doors say it (SFTP permission denied / no such file, FTP 550)."""
    if isinstance(exc, NotFound):
        return NoSuchFile(exc.message)
    return Forbidden(exc.message)


class UserView(MailboxView):
    """One logged-in account user's home, for one protocol session. Methods block (the store)."""

    def __init__(self, user: LoginUser, auth: Doors, remote_addr: str | None, protocol: str) -> None:
        # Nothing of a partner's mailbox (home folder) exists for a user; its uploads are staged
        # under `.partial/<account>/<e-mail>/b2b/<outbox>/` (no partner name contains "@").
        self.user = user
        self.auth = auth
        self.remote_addr = remote_addr
        self.protocol = protocol
        self.access = access_of(user, LoginKind.USER)
        self.staged = Staging(user.account_name, user.name)
        self.staging = self.staged.root
        self.max_file_bytes = user.max_file_bytes or get_settings().max_upload_bytes
        self.opened_at = time.time()
        # The receiver's folder as last listed, per outbox: FTP's MLSD/LIST stat each name listed.
        self._listed: dict[str, dict[str, Entry]] = {}
        self.sweep_partials()

    # --- the tree -----------------------------------------------------------------------------

    def scope(self) -> Scope:
        with session_scope() as session:
            return self._scope(session)

    def _scope(self, session: Session) -> Scope:
        return scope_for_login(
            session,
            self.user.account_id,
            kind="user",
            principal_id=self.user.partner_id,
            name=self.user.name,
            role=self.user.role,
        )

    def _outboxes(self) -> dict[str, Outbox]:
        with session_scope() as session:
            return {o.name: o for o in outbox_hook.outboxes(session, self._scope(session))}

    def outboxes(self) -> list[str]:
        return list(self._outboxes())

    def _parts(self, path: str, cwd: str = "/") -> tuple[list[str], Outbox | None]:
        """The normalised path's parts if it names the home, `b2b`, an outbox or a file in one."""
        virtual = self.normalize(path, cwd)
        parts = [p for p in virtual.split("/") if p]
        if parts in ([], [B2B]):
            return parts, None
        if 2 <= len(parts) <= 3 and parts[0] == B2B:
            box = self._outboxes().get(parts[1])
            if box is not None:
                return parts, box
        raise NoSuchFile(f"no such file or folder: {virtual}")

    def actions(self, box: Outbox) -> frozenset[Action]:
        return box.actions(self.scope())

    def _folder(self, name: str, actions: frozenset[Action]) -> Entry:
        mode = stat_mod.S_IFDIR | folder_mode(actions)
        return Entry(name=name, is_dir=True, size=0, mtime=self.opened_at, mode=mode)

    def entry_actions(self, path: str) -> tuple[bool, frozenset[Action]]:
        parts, box = self._parts(path)
        if box is None:
            return True, self.access.allowed(parts[0] if parts else HOME)
        return len(parts) == 2, self.actions(box)

    # --- what SFTP and FTP ask -----------------------------------------------------------------

    def listdir(self, path: str, cwd: str = "/") -> list[Entry]:
        parts, box = self._parts(path, cwd)
        if not parts:
            return [self._folder(B2B, self.access.allowed(B2B))]
        if box is None:
            scope = self.scope()
            return [self._folder(o.name, o.actions(scope)) for o in self._outboxes().values()]
        if len(parts) == 3:
            return [self.stat(path, cwd)]
        return self._receivers_folder(box)

    def _receivers_folder(self, box: Outbox) -> list[Entry]:
        """The receiver's folder, as allow-view shows it (the one core listing `connect files` uses)."""
        mode = stat_mod.S_IFREG | file_mode(self.actions(box))
        try:
            with session_scope() as session:
                listed = connections.receiver_listing(session, self._scope(session), box.connection_id)
        except Conflict:
            return []  # pending or revoked: there is no receiving folder to show
        except StatusError as exc:
            raise _refusal(exc) from None
        entries = sorted(
            (Entry(f.name, False, f.size, f.modified.timestamp(), mode) for f in listed if f.name),
            key=lambda e: e.name,
        )
        self._listed[box.name] = {e.name: e for e in entries}
        return entries

    def stat(self, path: str, cwd: str = "/") -> Entry:
        parts, box = self._parts(path, cwd)
        if not parts:
            return self._folder("/", self.access.allowed(HOME))
        if box is None:
            return self._folder(B2B, self.access.allowed(B2B))
        actions = self.actions(box)
        if len(parts) == 2:
            return self._folder(box.name, actions)
        if st := self.staged.stat(self._folder_of(box), parts[2]):  # an unfinished upload
            mode = stat_mod.S_IFREG | file_mode(actions)
            return Entry(parts[2], False, st.st_size, st.st_mtime, mode)
        if Action.LIST in actions:  # a file of the receiver's, as the view lists it
            listed = self._listed.get(box.name)
            if listed is None or parts[2] not in listed:
                self._receivers_folder(box)
                listed = self._listed.get(box.name, {})
            if parts[2] in listed:
                return listed[parts[2]]
        raise NoSuchFile(f"no such file: {self.normalize(path, cwd)}")

    def is_dir(self, path: str, cwd: str = "/") -> bool:
        try:
            return len(self._parts(path, cwd)[0]) < 3
        except NoSuchFile:
            return False

    def open_read(self, path: str, offset: int = 0, cwd: str = "/") -> DownloadFile:
        parts, _ = self._parts(path, cwd)
        if len(parts) < 3:
            raise Forbidden(f"{self.normalize(path, cwd)} is a folder")
        raise Forbidden("files in an outbox cannot be read: they are sent to the receiver, not kept here")

    def open_upload(
        self, path: str, offset: int | None = 0, append: bool = False, cwd: str = "/"
    ) -> UploadHandle:
        folder, name = self.upload_target(path, cwd)
        return self.staged.open(self, folder, name, offset=offset, append=append)

    def upload_target(self, path: str, cwd: str = "/") -> tuple[str, str]:
        virtual = self.normalize(path, cwd)
        try:
            parts, box = self._parts(path, cwd)
        except NoSuchFile:
            raise Forbidden(f"cannot create {virtual}: {self._where_files_go()}") from None
        if box is None or len(parts) != 3:
            raise Forbidden(f"cannot create {virtual}: {self._where_files_go()}")
        self._check_writable(box)
        try:
            intake.check_file_name(layout.carried_name(parts[2]))
        except intake.InvalidFileName as exc:
            raise InvalidName(str(exc)) from None
        return self._folder_of(box), parts[2]

    def _check_writable(self, box: Outbox) -> None:
        """Refuse a write into `box` with the connection's own words (revoked, role)."""
        try:
            with session_scope() as session:
                b2b_outbox.writable(session, self._scope(session), box.name)
        except StatusError as exc:
            raise _refusal(exc) from None

    def remove(self, path: str, cwd: str = "/") -> None:
        parts, box = self._parts(path, cwd)
        if box is None or len(parts) < 3:
            raise Forbidden(f"{self.normalize(path, cwd)} is a folder and cannot be removed")
        target = f"{self._folder_of(box)}/{parts[2]}"
        if self.staged.discard(self._folder_of(box), parts[2]):
            self.audit("upload.discarded", target)
            return
        raise Forbidden("files sent through an outbox cannot be deleted: they belong to the receiver")

    def rename(self, old: str, new: str, cwd: str = "/") -> Receipt | None:
        """Only `b2b/<outbox>/x.part` (a finished upload to a temporary name) → `b2b/<outbox>/x`."""
        refusal = Forbidden(
            "files can only be renamed within one outbox, from a temporary name to their final name"
        )
        try:
            (src, src_box), (dst, dst_box) = self._parts(old, cwd), self._parts(new, cwd)
        except NoSuchFile:
            raise refusal from None
        if src_box is None or dst_box is None or len(src) != 3 or len(dst) != 3 or src_box != dst_box:
            raise refusal
        folder = self._folder_of(src_box)
        if not layout.is_in_progress_name(src[2]) or not self.staged.stat(folder, src[2]):
            suffixes = ", ".join(IN_PROGRESS_SUFFIXES)
            raise Forbidden(f"only an upload to a temporary name ({suffixes}) can be renamed")
        try:
            intake.check_file_name(dst[2])
        except intake.InvalidFileName as exc:
            raise InvalidName(str(exc)) from None
        if src == dst:
            return None
        self._check_writable(src_box)
        receipt = self.staged.rename(self, (folder, src[2]), (folder, dst[2]))
        self.audit("rename", f"{folder}/{src[2]}", to=f"{folder}/{dst[2]}", receipt=receipt and receipt.id)
        return receipt

    def mkdir(self, path: str, cwd: str = "/") -> None:
        if self.is_dir(path, cwd):
            raise AlreadyExists(f"{self.normalize(path, cwd)} already exists")
        raise Forbidden("folders cannot be created: b2b/ holds one folder per outbox of the account")

    def rmdir(self, path: str, cwd: str = "/") -> None:
        raise Forbidden("folders cannot be removed: b2b/ holds one folder per outbox of the account")

    def sweep_partials(self, now: float | None = None) -> int:
        """Remove this user's staged uploads older than the retention, in every outbox."""
        return self.staged.sweep(now, tuple(f"{B2B}/{name}" for name in self.outboxes()))

    def _where_files_go(self) -> str:
        outboxes = self.outboxes()
        if not outboxes:
            return "files are sent through the account's outboxes (b2b/<outbox>/), and it has none yet"
        return f"files are sent through the account's outboxes: {', '.join(f'b2b/{o}/' for o in outboxes)}"

    @staticmethod
    def _folder_of(box: Outbox) -> str:
        return f"{B2B}/{box.name}"

    # --- what the staged uploads need (`core.mailbox.staging.UploadOwner`) ----------------------

    def take_file_slot(self) -> None:
        try:
            self.auth.open_files.acquire(self.user.key)
        except LimitReached as exc:
            raise TooManyOpenFiles(str(exc)) from None

    def release_file_slot(self) -> None:
        self.auth.open_files.release(self.user.key)

    def take_in(
        self, folder: str, name: str, staged: Path, sha256: str, also: intake.Also | None = None
    ) -> Receipt:
        outbox_name = folder.removeprefix(f"{B2B}/")
        try:
            with intake_refusals(staged):
                return b2b_outbox.take_staged(
                    self.scope(),
                    outbox_name,
                    name,
                    staged,
                    sha256=sha256,
                    remote_addr=self.remote_addr,
                    max_file_bytes=self.max_file_bytes,
                    also=also,
                )
        except StatusError as exc:
            raise _refusal(exc) from None
