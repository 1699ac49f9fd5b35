"""The partner's home as pyftpdlib's `AbstractedFS`: virtual paths, served by `MailboxView`."""

from __future__ import annotations

import os
import stat as stat_mod
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from core.mailbox.access import Access, Action
from core.mailbox.view import Entry, MailboxError, MailboxView
from mailboxes.ftp.pyftpd import AbstractedFS, FilesystemError
from mailboxes.ftp.replies import fs_error

if TYPE_CHECKING:
    from mailboxes.ftp.control import MailboxFTPHandler


# RFC 3659 `perm` letters for what a login may do: with a file (read; append and write, which
# resume an unfinished upload; delete), and in a folder beyond entering and listing it
# (create files; purge, i.e. delete them).
_FILE_LETTERS = ((Action.READ, "r"), (Action.WRITE, "aw"), (Action.DELETE, "d"))
_FOLDER_LETTERS = ((Action.WRITE, "c"), (Action.DELETE, "p"))


def perm_fact(access: Access, path: str) -> str:
    """The MLSD/MLST `perm` fact of one entry ("/", "/folder" or "/folder/file") of a partner's home."""
    folder, _, name = path.strip("/").partition("/")
    return perm_letters(not name, access.allowed(folder))


def perm_letters(is_folder: bool, allowed: frozenset[Action]) -> str:
    """The MLSD/MLST `perm` fact of one entry: a folder with the actions `allowed` in it, or a file
    in such a folder."""
    if not is_folder:
        return "".join(letters for action, letters in _FILE_LETTERS if action in allowed)
    listing = "l" if Action.LIST in allowed else ""
    return "e" + listing + "".join(letters for action, letters in _FOLDER_LETTERS if action in allowed)


def _mtime(entry: Entry) -> float:
    value: Any = entry.mtime
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value or 0)


def _stat_result(entry: Entry, path: str) -> os.stat_result:
    mode = int(entry.mode or 0)
    if stat_mod.S_IFMT(mode) == 0:
        mode |= stat_mod.S_IFDIR if entry.is_dir else stat_mod.S_IFREG
    mtime = _mtime(entry)
    ino = zlib.crc32(path.encode())  # a stable "unique" fact for MLSD, without real inode numbers
    return os.stat_result((mode, ino, 0, 1, 0, 0, int(entry.size or 0), mtime, mtime, mtime))


class MailboxFS(AbstractedFS):  # type: ignore[misc]  # pyftpdlib ships no type hints
    """The partner's home as pyftpdlib sees it. "Filesystem paths" are virtual, absolute paths.

    pyftpdlib maps a client's path with `ftp2fs` and checks it with `validpath` before any
    command; here `ftp2fs` is `MailboxView.normalize` (cwd-relative, `..` clamped at the home),
    so there is no real path to escape to, and the view checks every path again.
    """

    def __init__(self, root: str, cmd_channel: MailboxFTPHandler) -> None:
        super().__init__("/", cmd_channel)
        view = cmd_channel.view
        assert view is not None, "the filesystem is made after login"
        self.view: MailboxView = view
        self.partner = cmd_channel.username

    # --- paths

    def ftpnorm(self, ftppath: str) -> str:
        try:
            return self.view.normalize(ftppath, self.cwd)
        except MailboxError:
            # Unusable (a NUL, say): keep a lexical form; the view refuses it when it is used.
            return str(super().ftpnorm(ftppath))

    def ftp2fs(self, ftppath: str) -> str:
        return self.ftpnorm(ftppath)

    def fs2ftp(self, fspath: str) -> str:
        return fspath if fspath.startswith("/") else "/"

    def validpath(self, path: str) -> bool:
        return path.startswith("/")

    def realpath(self, path: str) -> str:
        return path

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except MailboxError as exc:
            raise fs_error(exc) from None

    # --- queries

    def entry(self, path: str) -> Entry:
        return self._call(self.view.stat, path)  # type: ignore[no-any-return]

    def stat(self, path: str) -> os.stat_result:
        return _stat_result(self.entry(path), path)

    lstat = stat

    def isdir(self, path: str) -> bool:
        try:
            return bool(self.view.stat(path).is_dir)
        except MailboxError:
            return False

    def isfile(self, path: str) -> bool:
        try:
            return not self.view.stat(path).is_dir
        except MailboxError:
            return False

    def islink(self, path: str) -> bool:
        return False

    def lexists(self, path: str) -> bool:
        try:
            self.view.stat(path)
        except MailboxError:
            return False
        return True

    def getsize(self, path: str) -> int:
        return int(self.entry(path).size or 0)

    def getmtime(self, path: str) -> float:
        return _mtime(self.entry(path))

    def listdir(self, path: str) -> list[str]:
        entries: list[Entry] = self._call(self.view.listdir, path)
        return [e.name for e in entries]

    listdirinfo = listdir

    def chdir(self, path: str) -> None:
        if not self.entry(path).is_dir:
            raise FilesystemError(f"{path} is a file, not a folder")
        self.cwd = path

    def get_user_by_uid(self, uid: int) -> str:
        return str(self.partner or "partner")

    def get_group_by_gid(self, gid: int) -> str:
        return "tradelane"

    def format_mlsx(
        self, basedir: str, listing: list[str], perms: str, facts: list[str], ignore_err: bool = True
    ) -> Iterator[bytes]:
        # The "perm" fact says what this partner may do with each entry, not one set for all.
        for name in listing:
            path = f"{basedir.rstrip('/')}/{name}"
            for line in super().format_mlsx(basedir, [name], "", facts, ignore_err):
                yield line.replace(b"perm=;", f"perm={self.perm_fact(path)};".encode(), 1)

    def perm_fact(self, path: str) -> str:
        return perm_letters(*self.view.entry_actions(path))

    # --- changes (pyftpdlib answers 550 with the view's message when these raise)

    def mkdir(self, path: str) -> None:
        self._refusable("mkdir", path, self.view.mkdir, path)

    def rmdir(self, path: str) -> None:
        self._refusable("rmdir", path, self.view.rmdir, path)

    def remove(self, path: str) -> None:
        self._refusable("delete", path, self.view.remove, path)

    def rename(self, src: str, dst: str) -> None:
        self._refusable("rename", src, self.view.rename, src, dst, to=dst)

    def _refusable(self, action: str, target: str, fn: Any, *args: Any, **detail: Any) -> None:
        """Run a change; the view audits what it did, a refusal is audited here."""
        try:
            fn(*args)
        except MailboxError as exc:
            self.cmd_channel.audit(f"{action}.failed", target, reason=str(exc), **detail)
            raise fs_error(exc) from None

    def chmod(self, path: str, mode: int) -> None:
        raise FilesystemError("changing permissions is not supported")

    def utime(self, path: str, timeval: float) -> None:
        raise FilesystemError("changing times is not supported")

    def readlink(self, path: str) -> str:
        raise FilesystemError("there are no links here")

    def open(self, filename: str, mode: str) -> BinaryIO:
        # RETR, STOR and APPE go through the handler (offsets, intake); nothing else opens files.
        raise FilesystemError("not supported")

    def mkstemp(self, *args: Any, **kwargs: Any) -> Any:
        raise FilesystemError("STOU is not supported; use STOR with a file name")
