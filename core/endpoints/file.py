"""A folder on a local (or mounted) filesystem.

Writes go to a hidden temporary file that is fsync'ed and then `os.replace`d over the target,
so readers see either the old file or the whole new one, never a partial one. With
`on_conflict` rename or fail the commit is a hard link of the temporary file to the target
instead, which the kernel refuses atomically when the name exists (then the next name is tried,
or the write fails); on a filesystem without hard links it checks the name first, best effort.
Every path is checked twice: lexically by `clean_path`, then by resolving symlinks, so nothing
under the root can point a read or write outside it.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import secrets
import stat as stat_mod
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, ClassVar, NoReturn

from pydantic import field_validator

from core.config import get_settings
from core.endpoints.base import (
    Endpoint,
    EndpointError,
    FileInfo,
    InvalidPath,
    NameTaken,
    NotFound,
    OnConflict,
    PermissionDenied,
    WriteStream,
    clean_path,
)
from core.endpoints.conflict import candidates
from core.endpoints.settings import EndpointSettings, LocalPath
from core.endpoints.tempname import PREFIX
from core.permissions import shared_dir_mode, shared_file_mode
from core.writeback import Writeback

TEMP_PREFIX = PREFIX  # the reserved temporary-name form (tempname.py), as every endpoint writes it


def map_os_error(exc: OSError, what: str) -> EndpointError:
    """Translate an OSError into the endpoint error tree; `what` names the path for people."""
    if exc.errno == errno.ENOENT:
        return NotFound(f"no such file: {what}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"permission denied: {what}")
    return EndpointError(f"{what}: {exc.strerror or exc}")


def fsync_dir(path: Path) -> None:
    """Make a rename durable. Best effort: some filesystems refuse fsync on a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_dirs(path: Path, mode: int | None = None) -> None:
    """`mkdir -p`; given `mode`, each folder it creates gets exactly that mode, not less the umask."""
    if mode is None:
        path.mkdir(parents=True, exist_ok=True)
        return
    missing: list[Path] = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:
            continue
        os.chmod(folder, mode)


def create_temp_file(directory: Path) -> tuple[int, Path]:
    """Create a new, empty temporary file in `directory`; returns its descriptor and path.

    Not `tempfile.mkstemp`: that forces mode 0600, while a file in an operator's folder should
    get the usual permissions (0666 less the umask), like any file a program creates there.
    """
    while True:
        candidate = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        return fd, candidate


# A hard link is refused with these where the filesystem has none (FAT, some network mounts).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK})


def _new_files_inherit(directory: Path, local: Path) -> bool:
    """Whether a file created in `directory` would take from it what a link of `local` keeps as it
    is: the folder's group (a setgid folder of another group), or a default ACL."""
    folder = os.stat(directory)
    if folder.st_mode & stat_mod.S_ISGID and folder.st_gid != os.stat(local).st_gid:
        return True
    try:
        return "system.posix_acl_default" in os.listxattr(directory)
    except OSError:  # no extended attributes here: no ACLs either
        return False


def link_temp_file(local: Path, directory: Path) -> Path | None:
    """A new temporary name in `directory` for the file `local` (a hard link); None when `local`
    is on another filesystem or this one has no hard links."""
    while True:
        candidate = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            os.link(local, candidate)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno in _NO_HARD_LINKS:
                return None
            raise
        return candidate


class FileWriteStream(WriteStream):
    """Bytes go to `temp`; commit fsyncs and renames it onto `target`, abort unlinks it. Their
    writeback starts as they are written (core/writeback.py), so the commit's fsync is short.

    With a `placer` (on_conflict rename or fail), commit puts the file under a name that is free
    instead: see `_commit_new`.
    """

    def __init__(
        self,
        fd: int,
        temp: Path,
        target: Path,
        what: str,
        placer: _Placer | None = None,
        mode: str = "wb",
    ) -> None:
        super().__init__()
        self._file = os.fdopen(fd, mode)
        self._writeback = Writeback(fd)
        self.temp = temp
        self.target = target
        self._what = what
        self._placer = placer

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise map_os_error(exc, self._what) from exc
        self._writeback.wrote(len(data))

    def _commit(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if self._placer is not None:
                self._commit_new(self._placer)
                return
            os.replace(self.temp, self.target)
        except OSError as exc:
            raise map_os_error(exc, self._what) from exc
        fsync_dir(self.target.parent)

    def _commit_new(self, placer: _Placer) -> None:
        """Link the temporary file to the first name that is free; link() never replaces a file."""
        for rel in placer.names():
            target = placer.local(rel)
            try:
                os.link(self.temp, target)
            except FileExistsError:
                placer.taken(rel)
                continue
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                if os.path.lexists(target):  # no hard links here: check, then rename (best effort)
                    placer.taken(rel)
                    continue
                os.replace(self.temp, target)
            else:
                os.unlink(self.temp)
            fsync_dir(target.parent)
            self.target, self.path = target, rel
            return
        placer.exhausted()

    def _abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


class LinkedWriteStream(FileWriteStream):
    """A write whose bytes are already in place: its temporary file is a hard link to a local file
    (a derived file in staging, core/derived.py), so nothing is copied. `read` reads those bytes
    back, for the caller to verify before the commit puts them under the target's name (fsync,
    then rename or link, as any write). Nothing can be written to it."""

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._file.read(n)
        return data

    def _write(self, data: bytes) -> None:
        raise EndpointError(f"{self._what}: a linked write holds its file already")


class _Placer:
    """The names a rename-or-fail write may take, and what to say when they are taken."""

    def __init__(self, endpoint: FileEndpoint, rel: str, on_conflict: OnConflict) -> None:
        self.endpoint = endpoint
        self.rel = rel
        self.on_conflict = on_conflict

    def names(self) -> Iterator[str]:
        return candidates(self.rel) if self.on_conflict is OnConflict.rename else iter([self.rel])

    def local(self, rel: str) -> Path:
        return self.endpoint._local(rel)

    def taken(self, rel: str) -> None:
        if self.on_conflict is OnConflict.fail:
            raise NameTaken(f"{self.endpoint.uri(rel)} exists and on_conflict is fail; not replaced")

    def exhausted(self) -> NoReturn:
        raise NameTaken(f"{self.endpoint.uri(self.rel)} and every numbered name after it are taken")


class FileSettings(EndpointSettings):
    """A folder on this machine (or a mount): files are written atomically, never half-visible."""

    path: Annotated[str, LocalPath()]
    """The folder (absolute; the CLI and apply make a relative one absolute)."""

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).expanduser().is_absolute():
            raise ValueError(f"must be absolute: {value!r}")
        return value


class FileEndpoint(Endpoint):
    """A folder; see FileSettings. No secrets."""

    scheme: ClassVar[str] = "file"
    settings: FileSettings
    # A folder someone picks files up from: a second file of a name must not replace the first.
    default_on_conflict: ClassVar[OnConflict | None] = OnConflict.rename
    # A missing root is a configuration mistake for a plain folder, so listing it fails;
    # a mailbox whose partner has never uploaded anything is simply empty.
    missing_root_is_empty: ClassVar[bool] = False

    def __init__(self, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        self.root = self._root_from_settings()

    def _root_from_settings(self) -> Path:
        return Path(self.settings.path).expanduser()

    def _temp_dir_for(self, target: Path) -> Path:
        """Where a write to `target` is staged. The same directory keeps `os.replace` atomic."""
        return target.parent

    def _outside_home(self) -> bool:
        """An operator's folder, not tradelane's private home (core/permissions.py)."""
        home = os.path.realpath(get_settings().home_dir)
        root = self._real_root()
        return root != home and not root.startswith(home.rstrip(os.sep) + os.sep)

    # --- paths -------------------------------------------------------------------------------

    def _real_root(self) -> str:
        return os.path.realpath(self.root)

    def local_path(self, path: str) -> Path:
        """The local path of a relative path; InvalidPath if it would lead outside the root."""
        return self._local(clean_path(path))

    def _local(self, rel: str) -> Path:
        """The local path for a cleaned relative path, refused if it resolves outside the root."""
        if any(part.startswith(TEMP_PREFIX) for part in rel.split("/")):
            raise InvalidPath(f"reserved name in path {rel!r}")
        root = self._real_root()
        local = os.path.join(root, *rel.split("/")) if rel else root
        real = os.path.realpath(local)
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            raise InvalidPath(f"path {rel!r} resolves outside the endpoint's root")
        return Path(local)

    # --- operations --------------------------------------------------------------------------

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        rel = clean_path(folder, allow_root=True)
        directory = self._local(rel)
        try:
            with os.scandir(directory) as it:
                names = sorted(entry.name for entry in it if not entry.name.startswith(TEMP_PREFIX))
        except FileNotFoundError:
            if rel or self.missing_root_is_empty:
                return iter(())
            raise NotFound(f"folder does not exist: {self.uri(rel)}") from None
        except NotADirectoryError:
            return iter(())
        except OSError as exc:
            raise map_os_error(exc, self.uri(rel)) from exc
        return self._infos(rel, names)

    def _infos(self, rel: str, names: builtins.list[str]) -> Iterator[FileInfo]:
        # Stat lazily so a huge folder starts yielding at once; entries that vanished meanwhile,
        # folders, and symlinks leading out of the root are skipped.
        for name in names:
            path = f"{rel}/{name}" if rel else name
            try:
                yield self._stat_local(path)
            except (NotFound, InvalidPath):
                continue

    def _stat_local(self, path: str) -> FileInfo:
        local = self._local(path)
        try:
            st = os.stat(local)
        except OSError as exc:
            raise map_os_error(exc, self.uri(path)) from exc
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotFound(f"not a file: {self.uri(path)}")
        return FileInfo(path=path, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, tz=UTC))

    def stat(self, path: str) -> FileInfo:
        return self._stat_local(clean_path(path))

    def exists_dir(self, path: str) -> bool | None:
        return self._local(clean_path(path, allow_root=True)).is_dir()

    def open_read(self, path: str) -> BinaryIO:
        rel = clean_path(path)
        local = self._local(rel)
        try:
            handle = open(local, "rb")  # noqa: SIM115  (the caller closes it)
        except IsADirectoryError:
            raise NotFound(f"not a file: {self.uri(rel)}") from None
        except OSError as exc:
            raise map_os_error(exc, self.uri(rel)) from exc
        if not stat_mod.S_ISREG(os.fstat(handle.fileno()).st_mode):
            handle.close()
            raise NotFound(f"not a file: {self.uri(rel)}")
        return handle

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        rel = clean_path(path)
        with self._preparing(rel) as (target, temp_dir, shared):
            fd, temp = create_temp_file(temp_dir)
            if shared:
                os.fchmod(fd, shared_file_mode())
        placer = None if on_conflict is OnConflict.overwrite else _Placer(self, rel, on_conflict)
        return FileWriteStream(fd, temp, target, self.uri(rel), placer)

    def open_linked(
        self, local: Path, path: str, on_conflict: OnConflict = OnConflict.overwrite
    ) -> LinkedWriteStream | None:
        """A write of the local file `local` to `path` by a hard link instead of a copy, when
        `local` is on this folder's filesystem; None when it is not (or links are refused there):
        then write a copy with `open_write`. Also None where a new file would get what a link
        cannot give it (the folder's group, or its default ACL). The caller keeps `local`
        unchanged until the commit (it becomes the delivered file: the same bytes, two names)."""
        rel = clean_path(path)
        with self._preparing(rel) as (target, temp_dir, shared):
            if _new_files_inherit(temp_dir, local):
                return None
            temp = link_temp_file(local, temp_dir)
            if temp is None:
                return None
            try:
                fd = os.open(temp, os.O_RDONLY)
                if shared:
                    os.fchmod(fd, shared_file_mode())
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
        placer = None if on_conflict is OnConflict.overwrite else _Placer(self, rel, on_conflict)
        return LinkedWriteStream(fd, temp, target, self.uri(rel), placer, mode="rb")

    @contextlib.contextmanager
    def _preparing(self, rel: str) -> Iterator[tuple[Path, Path, bool]]:
        """The target's folders made (and checked again), with the target, the folder its
        temporary file goes in, and whether it is an operator's folder; OS errors made clear."""
        target = self._local(rel)
        temp_dir = self._temp_dir_for(target)
        # Outside the home, new files and folders get the operator's umask, not tradelane's private one.
        shared = self._outside_home()
        try:
            make_dirs(target.parent, shared_dir_mode() if shared else None)
            make_dirs(temp_dir, shared_dir_mode() if shared else None)
            # Re-check now that the folders exist: a folder created by someone else could be a link.
            self._local(rel)
            if target.is_dir():
                raise EndpointError(f"a folder is in the way: {self.uri(rel)}")
            yield target, temp_dir, shared
        except FileExistsError:
            raise EndpointError(f"a file is in the way of a folder in {self.uri(rel)}") from None
        except NotADirectoryError:
            raise EndpointError(f"a file is in the way of a folder in {self.uri(rel)}") from None
        except OSError as exc:
            raise map_os_error(exc, self.uri(rel)) from exc

    def delete(self, path: str) -> None:
        rel = clean_path(path)
        local = self._local(rel)
        try:
            if local.is_dir() and not local.is_symlink():
                raise NotFound(f"not a file: {self.uri(rel)}")
            local.unlink()
        except OSError as exc:
            raise map_os_error(exc, self.uri(rel)) from exc

    def uri(self, path: str) -> str:
        rel = clean_path(path, allow_root=True)
        return (self.root / rel).as_uri() if rel else self.root.as_uri()
