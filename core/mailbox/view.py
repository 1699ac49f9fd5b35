"""A partner's mailbox as a tiny virtual filesystem: what SFTP, FTP (and the portal) adapt, each its own way.

The partner sees one home, always as "/", with the folders and permissions of the one mailbox
model (`core.mailbox.access`, the same the REST API shows):

    /            list only: the two folders below
    /upload/     write and list: every completed upload goes through `core.intake`
    /download/   read, and delete if the partner may (`can_delete_downloads`)

Every path a client sends is normalised here (`..` above "/" stays at "/", NUL is refused) and
resolved to at most one folder and one name, so nothing can point outside the partner's own home:
no other partner's files, no hidden names (`.` first), no symlinks (the last component is opened
with O_NOFOLLOW), no subfolders.

Uploads (`open_upload`) are staged outside every home by `core.mailbox.staging` (resumable:
`stat` reports the staged size, `open_upload(offset=N)`/`append=True` continue it); nothing is
visible in `upload/` and nothing is triggered until the client says the file is complete (an SFTP
close, the end of an FTP STOR); then `core.intake.receive_staged` takes it in, like every other
way in. Stale staged uploads are swept when a session opens.

Storage on S3 (core/storage.py): the folders a partner reads (`download/`) are keys of the storage
bucket, listed, read and deleted there; a read first copies the object, streamed, into a private
temporary file on this machine (SFTP reads at any offset, FTP sends with sendfile), removed when
the file is closed. Uploads are staged here as always and go into the bucket when complete.

Temporary names: many clients upload to `name.part`, `name.filepart`, `name.partial` or
`name.tmp` and rename to `name` when done (WinSCP, rclone, scripts), and another tradelane's
sftp/ftp endpoint to `name.<hex>.tradelane.part` or `.tradelane-tmp-<hex>-name`
(core/endpoints/tempname.py; the one hidden name a partner may use). An upload to such a name
therefore stays staged when it completes (invisible, nothing triggered); renaming it within
`upload/` to its final name takes it in under that name. Every other rename is refused: a
received file belongs to the data flows.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat as stat_mod
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from core import intake, receipt_files, storage
from core.config import get_settings
from core.endpoints.base import CHUNK_SIZE, Endpoint, EndpointError, FileInfo, InvalidPath, NotFound
from core.limits import LimitReached
from core.login import LoginUser
from core.mailbox import layout
from core.mailbox.access import HOME, Access, Action, access_of
from core.mailbox.doors import Doors
from core.mailbox.errors import (
    AlreadyExists,
    Busy,
    Forbidden,
    InvalidName,
    MailboxError,
    NoSuchFile,
    OffsetMismatch,
    QuotaExceeded,
    TooManyOpenFiles,
)
from core.mailbox.layout import IN_PROGRESS_SUFFIXES, PARTIAL_DIR
from core.mailbox.staging import StagedUpload, Staging, lstat_file
from core.models import Receipt

__all__ = [
    "PARTIAL_DIR_NAME",
    "AlreadyExists",
    "Busy",
    "DownloadFile",
    "Entry",
    "Forbidden",
    "InvalidName",
    "MailboxError",
    "MailboxView",
    "NoSuchFile",
    "OffsetMismatch",
    "QuotaExceeded",
    "TooManyOpenFiles",
    "UploadHandle",
]

log = logging.getLogger(__name__)

PARTIAL_DIR_NAME: Final = PARTIAL_DIR
# What a protocol session holds while a client uploads (the staging engine's handle).
UploadHandle = StagedUpload

READ, WRITE, DELETE = Action.READ, Action.WRITE, Action.DELETE


@contextlib.contextmanager
def intake_refusals(staged: Path) -> Iterator[None]:
    """Intake's refusals of a staged upload as the mailbox's errors, for every login's view (a refused
    sender is forbidden, as REST answers 403; an oversized upload's staged bytes are dropped)."""
    try:
        yield
    except intake.SenderRefused as exc:
        raise Forbidden(str(exc)) from None
    except intake.UploadTooLarge as exc:
        with contextlib.suppress(OSError):
            staged.unlink()
        raise QuotaExceeded(str(exc)) from None
    except intake.InvalidFileName as exc:
        raise InvalidName(str(exc)) from None
    except intake.IntakeError as exc:
        raise MailboxError(str(exc)) from None


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: float
    mode: int


@dataclass(frozen=True)
class _Place:
    """A resolved virtual path: home (folder None), a folder (name None) or a file."""

    path: str
    folder: str | None
    name: str | None

    @property
    def target(self) -> str:
        return f"{self.folder}/{self.name}" if self.name else (self.folder or "")


def _dir_entry(name: str, local: Path, mode: int) -> Entry:
    try:
        mtime = os.stat(local).st_mtime
    except OSError:
        mtime = time.time()
    return Entry(name=name, is_dir=True, size=0, mtime=mtime, mode=stat_mod.S_IFDIR | mode)


def folder_mode(actions: frozenset[Action]) -> int:
    """POSIX permission bits for a folder: writable where files may be created or deleted, readable
    where it may be listed (an outbox whose receiver allows no view is write-only)."""
    readable = 0o444 if Action.LIST in actions else 0
    writable = 0o200 if actions & {WRITE, DELETE} else 0
    return readable | writable | 0o111


def file_mode(actions: frozenset[Action]) -> int:
    """POSIX permission bits for a file in a folder: readable, or write-only (an upload to resume)."""
    if READ in actions:
        return 0o644
    return 0o200 if WRITE in actions else 0


class MailboxView:
    """One logged-in partner's mailbox, for one protocol session. Methods block (disk, store)."""

    def __init__(self, user: LoginUser, auth: Doors, remote_addr: str | None, protocol: str) -> None:
        self.user = user
        self.auth = auth
        self.remote_addr = remote_addr
        self.protocol = protocol
        self.access: Access = access_of(user)
        self.home = layout.home(user.account_name, user.name)
        # With the storage on S3, the partner's home in the bucket (see the module's docstring).
        self.bucket: Endpoint | None = (
            storage.open_home(user.account_name, user.name) if storage.is_object_store() else None
        )
        self.staged = Staging(user.account_name, user.name)
        self.staging = self.staged.root
        self.max_file_bytes = user.max_file_bytes or get_settings().max_upload_bytes
        self.sweep_partials()

    # --- paths -------------------------------------------------------------------------------

    @staticmethod
    def normalize(path: str, cwd: str = "/") -> str:
        """The absolute virtual POSIX path for `path` seen from `cwd`; `..` never climbs above "/".

        In Unicode NFC, the form names are stored in (`core.names`), so a client that sends "é" as
        "e" + a combining accent (NFD) reaches the same file, and never creates a look-alike twin.
        """
        if "\x00" in path or "\x00" in cwd:
            raise InvalidName("path must not contain NUL")
        path, cwd = unicodedata.normalize("NFC", path), unicodedata.normalize("NFC", cwd)
        if not path.startswith("/"):
            path = f"{cwd.rstrip('/')}/{path}"
        parts: list[str] = []
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
        return "/" + "/".join(parts)

    def _resolve(self, path: str, cwd: str = "/", *, writing: bool = False) -> _Place:
        virtual = self.normalize(path, cwd)
        parts = [p for p in virtual.split("/") if p]
        if not parts:
            return _Place(virtual, None, None)
        if parts[0] not in self.access.folders or len(parts) > 2:
            if writing:
                raise Forbidden(f"cannot create {virtual}: {self._where_to_upload()} (no subfolders)")
            raise NoSuchFile(f"no such file or folder: {virtual}")
        if len(parts) == 1:
            return _Place(virtual, parts[0], None)
        if not self.access.may_name(parts[0], parts[1]):
            raise NoSuchFile(f"no such file: {virtual}")
        return _Place(virtual, parts[0], parts[1])

    def _where_to_upload(self) -> str:
        return f"upload files into /{self.access.first_allowing(WRITE)}"

    def _local(self, place: _Place) -> Path:
        assert place.folder is not None and place.name is not None
        return self.home / place.folder / place.name

    def _staged_stat(self, place: _Place) -> os.stat_result | None:
        """The staged upload at `place`, in a folder where the partner uploads."""
        assert place.folder is not None and place.name is not None
        if not self.access.allows(place.folder, WRITE):
            return None
        return self.staged.stat(place.folder, place.name)

    def _in_bucket(self, folder: str) -> Endpoint | None:
        """The storage bucket, if `folder`'s files are there: a folder the partner does not write."""
        if self.bucket is None or self.access.allows(folder, WRITE):
            return None
        return self.bucket

    @contextlib.contextmanager
    def _bucket_errors(self, virtual: str) -> Iterator[None]:
        try:
            yield
        except (NotFound, InvalidPath):
            raise NoSuchFile(f"no such file: {virtual}") from None
        except EndpointError as exc:
            log.warning("storage: %s", exc)
            raise MailboxError(f"{virtual}: the storage did not answer; try again") from None

    def _shown(self, folder: str, name: str | None = None) -> list[FileInfo] | None:
        """With the storage on S3, a folder the partner uploads into shows its received files from
        the store (core/receipt_files.py `shown`); None: look in the local folder."""
        if self.bucket is None or not self.access.allows(folder, WRITE) or self.user.kind != "partner":
            return None
        return receipt_files.shown(self.user.partner_id, folder, name)

    def _bucket_entry(self, folder: str, info: FileInfo) -> Entry:
        mode = file_mode(self.access.allowed(folder))
        mtime = info.modified.timestamp() if info.modified else time.time()
        return Entry(info.name, is_dir=False, size=info.size, mtime=mtime, mode=stat_mod.S_IFREG | mode)

    def _open_from_bucket(self, bucket: Endpoint, place: _Place) -> int:
        """The object copied, streamed, into an unnamed private file here: its descriptor."""
        temp_dir = layout.temp_dir()
        temp_dir.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=temp_dir, prefix=".download-")
        os.unlink(temp)  # nameless: gone with its last descriptor, whatever happens
        try:
            with self._bucket_errors(place.path), bucket.open_read(place.target) as source:
                while chunk := source.read(CHUNK_SIZE):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            os.lseek(fd, 0, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # --- looking ------------------------------------------------------------------------------

    def _folder_mode(self, folder: str | None) -> int:
        return folder_mode(self.access.allowed(folder or HOME))

    def _file_entry(self, folder: str, name: str, st: os.stat_result) -> Entry:
        mode = file_mode(self.access.allowed(folder))
        return Entry(name, is_dir=False, size=st.st_size, mtime=st.st_mtime, mode=stat_mod.S_IFREG | mode)

    def listdir(self, path: str, cwd: str = "/") -> list[Entry]:
        """The entries of a folder, by name; never hidden, staged or special files."""
        place = self._resolve(path, cwd)
        if place.folder is None:
            return [_dir_entry(f, self.home / f, self._folder_mode(f)) for f in self.access.folders]
        if place.name is not None:
            return [self.stat(place.path)]
        if bucket := self._in_bucket(place.folder):
            with self._bucket_errors(place.path):
                infos = list(bucket.list(place.folder))
            found = [self._bucket_entry(place.folder, i) for i in infos if not layout.is_hidden(i.name)]
            return sorted(found, key=lambda e: e.name)
        if (shown := self._shown(place.folder)) is not None:
            return [self._bucket_entry(place.folder, info) for info in shown]
        entries = []
        try:
            with os.scandir(self.home / place.folder) as it:
                for item in it:
                    if layout.is_hidden(item.name) or not item.is_file(follow_symlinks=False):
                        continue
                    with contextlib.suppress(OSError):
                        st = item.stat(follow_symlinks=False)
                        entries.append(self._file_entry(place.folder, item.name, st))
        except FileNotFoundError:
            return []
        return sorted(entries, key=lambda e: e.name)

    def stat(self, path: str, cwd: str = "/") -> Entry:
        """One entry. Where the partner uploads, an unfinished (staged) upload gives its size so far."""
        place = self._resolve(path, cwd)
        if place.folder is None:
            return _dir_entry("/", self.home, self._folder_mode(None))
        if place.name is None:
            return _dir_entry(place.folder, self.home / place.folder, self._folder_mode(place.folder))
        if st := self._staged_stat(place):
            return self._file_entry(place.folder, place.name, st)
        if bucket := self._in_bucket(place.folder):
            with self._bucket_errors(place.path):
                return self._bucket_entry(place.folder, bucket.stat(place.target))
        if (shown := self._shown(place.folder, place.name)) is not None:
            if not shown:
                raise NoSuchFile(f"no such file: {place.path}")
            return self._bucket_entry(place.folder, shown[0])
        if st := lstat_file(self._local(place)):
            return self._file_entry(place.folder, place.name, st)
        raise NoSuchFile(f"no such file: {place.path}")

    def entry_actions(self, path: str) -> tuple[bool, frozenset[Action]]:
        """Whether the absolute `path` names a folder, and the actions of the folder it is or is in
        (for FTP's `perm` facts)."""
        folder, _, name = path.strip("/").partition("/")
        return not name, self.access.allowed(folder)

    def is_dir(self, path: str, cwd: str = "/") -> bool:
        try:
            return self._resolve(path, cwd).name is None
        except NoSuchFile:
            return False

    # --- reading ------------------------------------------------------------------------------

    def open_read(self, path: str, offset: int = 0, cwd: str = "/") -> DownloadFile:
        """A binary file positioned at `offset`, from a folder the partner reads; audited when closed."""
        place = self._resolve(path, cwd)
        if place.name is None:
            raise Forbidden(f"{place.path} is a folder")
        assert place.folder is not None
        if not self.access.allows(place.folder, READ):
            readable = self.access.first_allowing(READ)
            raise Forbidden(
                f"files in {place.folder}/ cannot be read back: {readable}/ holds the files for you"
            )
        self.take_file_slot()
        try:
            if bucket := self._in_bucket(place.folder):
                fd = self._open_from_bucket(bucket, place)
            else:
                fd = os.open(self._local(place), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self.release_file_slot()
            raise NoSuchFile(f"no such file: {place.path}") from exc
        except BaseException:
            self.release_file_slot()
            raise
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise NoSuchFile(f"no such file: {place.path}")
            if offset < 0:
                raise MailboxError("offset must not be negative")
        except BaseException:
            os.close(fd)
            self.release_file_slot()
            raise
        handle = DownloadFile(fd, self, place.target, st.st_size, offset)
        if offset:
            handle.seek(offset)
        return handle

    # --- writing ------------------------------------------------------------------------------

    def open_upload(
        self, path: str, offset: int | None = 0, append: bool = False, cwd: str = "/"
    ) -> UploadHandle:
        """Start (or resume) an upload; nothing shows until `complete()` (see `Staging.open`).

        `offset=0` starts afresh; `offset=N` resumes after the first N staged bytes (FTP REST);
        `append=True` resumes after all staged bytes (SFTP APPEND, FTP APPE); `offset=None`
        keeps what is staged and lets the first write's offset say where the upload resumes.
        """
        folder, name = self.upload_target(path, cwd)
        received = (append or bool(offset)) and lstat_file(self.home / folder / name) is not None
        return self.staged.open(self, folder, name, offset=offset, append=append, received=received)

    def resume_upload(self, path: str, offset: int) -> UploadHandle:
        """Continue an upload exactly at `offset`, the staged size (0 starts one): never truncates
        (`Staging.resume_at`; `OffsetMismatch` carries the staged size). The portal's tus PATCH."""
        folder, name = self.upload_target(path)
        return self.staged.resume_at(self, folder, name, offset)

    def upload_target(self, path: str, cwd: str = "/") -> tuple[str, str]:
        """(folder, name) of a file the login may upload at `path`; refused with the mailbox's
        words otherwise (a folder, a read-only folder, a name intake would refuse)."""
        place = self._resolve(path, cwd, writing=True)
        if place.name is None:
            raise Forbidden(f"{place.path} is a folder: {self._where_to_upload()}")
        assert place.folder is not None
        if not self.access.allows(place.folder, WRITE):
            raise Forbidden(f"{place.folder}/ is read-only: {self._where_to_upload()}")
        try:
            # Another tradelane's temporary name is hidden on purpose: check the name it carries.
            intake.check_file_name(layout.carried_name(place.name))
        except intake.InvalidFileName as exc:
            raise InvalidName(str(exc)) from None
        return place.folder, place.name

    def remove(self, path: str, cwd: str = "/") -> None:
        """Delete a file (where allowed), or discard an unfinished upload where the partner uploads."""
        place = self._resolve(path, cwd)
        if place.name is None:
            raise Forbidden(f"{place.path} is a folder and cannot be removed")
        assert place.folder is not None
        if self.access.allows(place.folder, WRITE):
            if self.staged.discard(place.folder, place.name):
                self.audit("upload.discarded", place.target)
                return
            if not self.access.allows(place.folder, DELETE):
                if lstat_file(self._local(place)) or self._shown(place.folder, place.name):
                    raise Forbidden(
                        f"files in {place.folder}/ belong to the data flows now and cannot be deleted"
                    )
                raise NoSuchFile(f"no such file: {place.path}")
        if not self.access.allows(place.folder, DELETE):
            raise Forbidden(f"you may not delete files in {place.folder}/")
        if bucket := self._in_bucket(place.folder):
            with self._bucket_errors(place.path):
                bucket.delete(place.target)
            self.audit("delete", place.target)
            return
        local = self._local(place)
        if not lstat_file(local):
            raise NoSuchFile(f"no such file: {place.path}")
        try:
            local.unlink()
        except FileNotFoundError:
            raise NoSuchFile(f"no such file: {place.path}") from None
        self.audit("delete", place.target)

    def rename(self, old: str, new: str, cwd: str = "/") -> Receipt | None:
        """Only `upload/x.part` (a finished upload to a temporary name) → `upload/x` is allowed.

        Renaming to the final name takes the file in (its receipt is returned); renaming to
        another temporary name keeps it staged.
        """
        src, dst = self._resolve(old, cwd), self._resolve(new, cwd)
        if src.name is None or dst.name is None:
            raise Forbidden("folders cannot be renamed")
        assert src.folder is not None and dst.folder is not None
        if src.folder != dst.folder or not self.access.allows(src.folder, WRITE):
            writable = self.access.first_allowing(WRITE)
            raise Forbidden(
                f"files can only be renamed in {writable}/, from a temporary name to their final name"
            )
        staged = self._staged_stat(src)
        if not layout.is_in_progress_name(src.name) or not staged:
            if lstat_file(self._local(src)) or staged:
                suffixes = ", ".join(IN_PROGRESS_SUFFIXES)
                raise Forbidden(f"only an upload to a temporary name ({suffixes}) can be renamed")
            raise NoSuchFile(f"no such file: {src.path}")
        try:
            intake.check_file_name(dst.name)
        except intake.InvalidFileName as exc:
            raise InvalidName(str(exc)) from None
        if src == dst:
            return None
        receipt = self.staged.rename(self, (src.folder, src.name), (dst.folder, dst.name))
        if receipt is None:
            self.audit("rename", src.target, to=dst.target)
        else:
            self.audit("rename", src.target, to=dst.target, receipt=receipt.id)
        return receipt

    def mkdir(self, path: str, cwd: str = "/") -> None:
        if self.is_dir(path, cwd):
            raise AlreadyExists(f"{self.normalize(path, cwd)} already exists")
        raise Forbidden(f"folders cannot be created: a mailbox has only {self._folders_said()}")

    def rmdir(self, path: str, cwd: str = "/") -> None:
        raise Forbidden(f"folders cannot be removed: a mailbox has only {self._folders_said()}")

    def _folders_said(self) -> str:
        return " and ".join(f"/{f}" for f in sorted(self.access.folders, reverse=True))

    # --- what the staged uploads of this session need (`core.mailbox.staging.UploadOwner`) ----

    def take_file_slot(self) -> None:
        """Count one more open file of this partner's (`TRADELANE_MAX_OPEN_FILES_PER_PARTNER`)."""
        try:
            self.auth.open_files.acquire(self.user.key)
        except LimitReached as exc:
            raise TooManyOpenFiles(str(exc)) from None

    def release_file_slot(self) -> None:
        self.auth.open_files.release(self.user.key)

    def audit(self, action: str, target: str, **detail: object) -> None:
        try:
            self.auth.record(self.user, action, target, self.remote_addr, protocol=self.protocol, **detail)
        except Exception:  # an audit failure must not break the transfer that already happened
            log.exception("could not record audit event %s %s", action, target)

    def take_in(
        self, folder: str, name: str, staged: Path, sha256: str, also: intake.Also | None = None
    ) -> Receipt:
        with intake_refusals(staged):
            return intake.receive_staged(
                self.user,
                folder,
                name,
                staged,
                sha256=sha256,
                protocol=self.protocol,
                remote_addr=self.remote_addr,
                also=also,
            )

    # --- housekeeping -------------------------------------------------------------------------

    def sweep_partials(self, now: float | None = None) -> int:
        """Remove this partner's staged uploads older than the retention; cheap, rate-limited."""
        removed = self.staged.sweep(now)
        if removed:
            log.info("removed %d stale partial upload(s) of %s", removed, self.user.name)
        return removed


class DownloadFile(io.FileIO):
    """A file in download/, opened for reading; counts what was read and audits it on close.

    `pread(size, offset)` and `preadinto(buffer, offset)` read at a position without moving the
    file's own (for SFTP's positioned reads). Protocols that send with `os.sendfile` add what
    they sent to `sent`.
    """

    def __init__(self, fd: int, view: MailboxView, target: str, size: int, offset: int) -> None:
        super().__init__(fd, "rb", closefd=True)
        self.view = view
        self.target = target
        self.name = target  # FileIO would say the descriptor number
        self.size = size
        self.offset = offset
        self.sent = 0
        self._audited = False

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if data:
            self.sent += len(data)
        return data

    def readinto(self, buffer: object) -> int:
        n = super().readinto(buffer)  # type: ignore[arg-type]
        if n:
            self.sent += n
        return n

    def readall(self) -> bytes:
        data = super().readall()
        self.sent += len(data)
        return data

    def pread(self, size: int, offset: int) -> bytes:
        data = os.pread(self.fileno(), size, offset)
        self.sent += len(data)
        return data

    def preadinto(self, buffer: memoryview, offset: int) -> int:
        """Fill `buffer` from `offset` (fewer bytes only at the end of the file); how many were read."""
        got = 0
        while got < len(buffer):
            n = os.preadv(self.fileno(), [buffer[got:]], offset + got)
            if n == 0:
                break
            got += n
        self.sent += got
        return got

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self.view.release_file_slot()
        if not self._audited:
            self._audited = True
            self.view.audit("download", self.target, size=self.sent, file_size=self.size, offset=self.offset)
