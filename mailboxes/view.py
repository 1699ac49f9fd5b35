"""A partner's mailbox as a tiny virtual filesystem: what SFTP and FTP adapt, each in its own way.

The partner sees one home, always as "/":

    /            list only: the two folders below
    /upload/     write and list: every completed upload goes through `core.intake`
    /download/   read, and delete if the partner may (`can_delete_downloads`)

the same permissions the REST API shows (`api/space.py`). Every path a client sends is normalised
here (`..` above "/" stays at "/", NUL is refused) and resolved to at most one folder and one
name, so nothing can point outside the partner's own home: no other partner's files, no hidden
names (`.` first), no symlinks (the last component is opened with O_NOFOLLOW), no subfolders.

Uploads (`open_upload`) are written to a staging file of their own, outside every home:
`<mailbox_root>/.partial/<account>/<partner>/upload/<name>`. Nothing is visible in `upload/` and
nothing is triggered until the client says the file is complete (`UploadHandle.complete()`: an
SFTP close, the end of an FTP STOR); then `core.intake.receive_staged` renames it into place and
records the receipt and its transfers, like every other way in. A broken upload
(`UploadHandle.abandon()`: connection dropped, client killed) keeps its staging file so that the
client can resume it:

* `stat("/upload/x")` reports the staged size while an unfinished upload of `x` exists (that is
  what OpenSSH's `reput`/`put -a`, WinSCP and FTP `SIZE` + `REST`/`APPE` ask before resuming);
* `open_upload(path, offset=N)` (FTP REST N + STOR) keeps the first N staged bytes,
  `append=True` (SFTP APPEND flag, FTP APPE) continues after all of them, `offset=None` (an SFTP
  open without TRUNC) lets the first write's offset decide;
* the SHA-256 always covers the whole file: resumed uploads re-hash the staged prefix once, and
  writes that arrive out of order are allowed (as on any POSIX file) at the price of one re-hash
  of the file on completion.

Staging files older than `PARTIAL_RETENTION_SECONDS` are removed by a cheap check of the
partner's own staging folder whenever a session opens.

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
import errno
import hashlib
import io
import logging
import os
import stat as stat_mod
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from core import intake
from core.config import get_settings
from core.db import HOME_ACCOUNT
from core.endpoints.mailbox import mailbox_root_for
from core.endpoints.tempname import PREFIX as TRADELANE_TEMP_PREFIX
from core.limits import LimitReached
from core.models import Receipt
from mailboxes.auth import MailboxAuth, MailboxUser

log = logging.getLogger(__name__)

UPLOAD: Final = "upload"
DOWNLOAD: Final = "download"
FOLDERS: Final = (DOWNLOAD, UPLOAD)
# Uploads to these names wait, staged, to be renamed to their final name.
IN_PROGRESS_SUFFIXES: Final = (".part", ".partial", ".filepart", ".tmp")
PARTIAL_DIR_NAME: Final = ".partial"
PARTIAL_RETENTION_SECONDS: Final = 24 * 3600.0
# A partner's staging folder is looked at for stale files at most this often.
_SWEEP_EVERY_SECONDS = 60.0
_READ_CHUNK = 1024 * 1024


class MailboxError(Exception):
    """An operation the mailbox refuses; the message is safe to show the client."""


class Forbidden(MailboxError):
    """Not allowed here (wrong folder, no permission, not supported)."""


class NoSuchFile(MailboxError):
    """No file or folder at that path (or one the partner may not know about)."""


class AlreadyExists(MailboxError):
    pass


class QuotaExceeded(MailboxError):
    """The file is larger than the partner's size limit."""


class InvalidName(MailboxError):
    """A path or file name that cannot be used (NUL, control characters, hidden, too long)."""


class Busy(MailboxError):
    """Another session is uploading the same file right now."""


class TooManyOpenFiles(Busy):
    """The partner (or every partner together) holds as many open files as allowed."""


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


def is_in_progress_name(name: str) -> bool:
    return name.lower().endswith(IN_PROGRESS_SUFFIXES) or name.startswith(TRADELANE_TEMP_PREFIX)


# Uploads being written (or renamed into place) right now, by staging path: one at a time per file,
# across all sessions of this process.
_active: dict[Path, object] = {}
_RENAMING = object()
# Hashes of completed uploads to temporary names, so the rename to the final name need not re-read
# them: staging path -> (size, mtime_ns, sha256).
_finished: dict[Path, tuple[int, int, str]] = {}
_registry_lock = threading.Lock()
_last_sweep: dict[tuple[str, str], float] = {}


def _sha256_of(fd: int, end: int, sha: hashlib._Hash | None = None, start: int = 0) -> hashlib._Hash:
    sha = sha or hashlib.sha256()
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - pos), pos)
        if not chunk:
            raise MailboxError("the staged upload is shorter than expected")
        sha.update(chunk)
        pos += len(chunk)
    return sha


def _open_staged(staged: Path) -> tuple[int, bool]:
    """The staging file's descriptor, read-write, and whether this call created it."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(staged, flags), False
    except FileNotFoundError:
        return os.open(staged, flags | os.O_CREAT | os.O_EXCL, 0o600), True


def _dir_entry(name: str, local: Path, mode: int) -> Entry:
    try:
        mtime = os.stat(local).st_mtime
    except OSError:
        mtime = time.time()
    return Entry(name=name, is_dir=True, size=0, mtime=mtime, mode=stat_mod.S_IFDIR | mode)


class MailboxView:
    """One logged-in partner's mailbox, for one protocol session. Methods block (disk, store)."""

    partial_retention: float = PARTIAL_RETENTION_SECONDS

    def __init__(self, user: MailboxUser, auth: MailboxAuth, remote_addr: str | None, protocol: str) -> None:
        self.user = user
        self.auth = auth
        self.remote_addr = remote_addr
        self.protocol = protocol
        self.home = mailbox_root_for(HOME_ACCOUNT, user.name)
        self.staging = get_settings().mailbox_root / PARTIAL_DIR_NAME / HOME_ACCOUNT / user.name
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
        if parts[0] not in FOLDERS or len(parts) > 2:
            if writing:
                raise Forbidden(f"cannot create {virtual}: upload files into /upload (no subfolders)")
            raise NoSuchFile(f"no such file or folder: {virtual}")
        if len(parts) == 1:
            return _Place(virtual, parts[0], None)
        name = parts[1]
        if name.startswith(".") and not (parts[0] == UPLOAD and name.startswith(TRADELANE_TEMP_PREFIX)):
            raise NoSuchFile(f"no such file: {virtual}")
        return _Place(virtual, parts[0], name)

    def _local(self, place: _Place) -> Path:
        assert place.folder is not None and place.name is not None
        return self.home / place.folder / place.name

    def _staged(self, place: _Place) -> Path:
        assert place.folder is not None and place.name is not None
        return self.staging / place.folder / place.name

    def _lstat_file(self, local: Path) -> os.stat_result | None:
        try:
            st = os.lstat(local)
        except OSError:
            return None
        return st if stat_mod.S_ISREG(st.st_mode) else None

    # --- looking ------------------------------------------------------------------------------

    def _folder_mode(self, folder: str | None) -> int:
        if folder is None:
            return 0o555
        if folder == DOWNLOAD and not self.user.can_delete_downloads:
            return 0o555
        return 0o755

    def _file_entry(self, folder: str, name: str, st: os.stat_result) -> Entry:
        mode = 0o644 if folder == DOWNLOAD else 0o200
        return Entry(name, is_dir=False, size=st.st_size, mtime=st.st_mtime, mode=stat_mod.S_IFREG | mode)

    def listdir(self, path: str, cwd: str = "/") -> list[Entry]:
        """The entries of a folder, by name; never hidden, staged or special files."""
        place = self._resolve(path, cwd)
        if place.folder is None:
            return [_dir_entry(f, self.home / f, self._folder_mode(f)) for f in FOLDERS]
        if place.name is not None:
            return [self.stat(place.path)]
        entries = []
        try:
            with os.scandir(self.home / place.folder) as it:
                for item in it:
                    if item.name.startswith(".") or not item.is_file(follow_symlinks=False):
                        continue
                    with contextlib.suppress(OSError):
                        st = item.stat(follow_symlinks=False)
                        entries.append(self._file_entry(place.folder, item.name, st))
        except FileNotFoundError:
            return []
        return sorted(entries, key=lambda e: e.name)

    def stat(self, path: str, cwd: str = "/") -> Entry:
        """One entry. In upload/, an unfinished (staged) upload answers with its size so far."""
        place = self._resolve(path, cwd)
        if place.folder is None:
            return _dir_entry("/", self.home, self._folder_mode(None))
        if place.name is None:
            return _dir_entry(place.folder, self.home / place.folder, self._folder_mode(place.folder))
        if place.folder == UPLOAD and (st := self._lstat_file(self._staged(place))):
            return self._file_entry(UPLOAD, place.name, st)
        if st := self._lstat_file(self._local(place)):
            return self._file_entry(place.folder, place.name, st)
        raise NoSuchFile(f"no such file: {place.path}")

    def is_dir(self, path: str, cwd: str = "/") -> bool:
        try:
            return self._resolve(path, cwd).name is None
        except NoSuchFile:
            return False

    # --- reading ------------------------------------------------------------------------------

    def open_read(self, path: str, offset: int = 0, cwd: str = "/") -> DownloadFile:
        """A binary file positioned at `offset`, from download/ only; audited when it is closed."""
        place = self._resolve(path, cwd)
        if place.name is None:
            raise Forbidden(f"{place.path} is a folder")
        if place.folder != DOWNLOAD:
            raise Forbidden("files in upload/ cannot be read back: download/ holds the files for you")
        self._take_file_slot()
        try:
            fd = os.open(self._local(place), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self.release_file_slot()
            raise NoSuchFile(f"no such file: {place.path}") from exc
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
        """Start (or resume) an upload into upload/; nothing shows until `complete()`.

        `offset=0` starts afresh; `offset=N` resumes after the first N staged bytes (FTP REST);
        `append=True` resumes after all staged bytes (SFTP APPEND, FTP APPE); `offset=None`
        keeps what is staged and lets the first write's offset say where the upload resumes.
        """
        place = self._resolve(path, cwd, writing=True)
        if place.name is None:
            raise Forbidden(f"{place.path} is a folder: upload files into /upload")
        if place.folder != UPLOAD:
            raise Forbidden("download/ is read-only: upload files into /upload")
        try:
            # Another tradelane's temporary name is hidden on purpose: check the name it carries.
            intake.check_file_name(place.name.removeprefix(TRADELANE_TEMP_PREFIX))
        except intake.InvalidFileName as exc:
            raise InvalidName(str(exc)) from None
        if offset is not None and offset < 0:
            raise MailboxError("offset must not be negative")
        staged = self._staged(place)
        with _registry_lock:
            if staged in _active:
                raise Busy(f"{place.path} is being uploaded by another session")
            self._take_file_slot()
            try:
                fd, created = _open_staged(staged)
            except OSError as exc:
                self.release_file_slot()
                raise MailboxError(f"cannot open {place.path}: {exc.strerror}") from exc
            try:
                have = os.fstat(fd).st_size
                resuming = append or bool(offset)
                if resuming and have == 0 and self._lstat_file(self._local(place)):
                    raise Forbidden(
                        f"{place.path} was already received and cannot be appended to; upload it whole"
                    )
                if append:
                    start: int | None = have
                elif offset is None:
                    start = None
                elif offset > have:
                    raise MailboxError(
                        f"cannot resume {place.path} at byte {offset}: {have} bytes were received"
                    )
                else:
                    start = offset
                if start is not None and start < have:
                    os.ftruncate(fd, start)
                    have = start
            except BaseException:
                os.close(fd)
                self.release_file_slot()
                if created:  # a refused resume leaves no empty staging file behind
                    with contextlib.suppress(OSError):
                        staged.unlink()
                raise
            handle = UploadHandle(self, place, staged, fd, have, start, append)
            _active[staged] = handle
            _finished.pop(staged, None)
        return handle

    def remove(self, path: str, cwd: str = "/") -> None:
        """Delete a file in download/ (if allowed), or discard an unfinished upload in upload/."""
        place = self._resolve(path, cwd)
        if place.name is None:
            raise Forbidden(f"{place.path} is a folder and cannot be removed")
        if place.folder == UPLOAD:
            staged = self._staged(place)
            with _registry_lock:
                if staged in _active:
                    raise Busy(f"{place.path} is being uploaded by another session")
                if self._lstat_file(staged):
                    staged.unlink()
                    _finished.pop(staged, None)
                    self._audit("upload.discarded", place.target)
                    return
            if self._lstat_file(self._local(place)):
                raise Forbidden("files in upload/ belong to the data flows now and cannot be deleted")
            raise NoSuchFile(f"no such file: {place.path}")
        if not self.user.can_delete_downloads:
            raise Forbidden("you may not delete files in download/")
        local = self._local(place)
        if not self._lstat_file(local):
            raise NoSuchFile(f"no such file: {place.path}")
        try:
            local.unlink()
        except FileNotFoundError:
            raise NoSuchFile(f"no such file: {place.path}") from None
        self._audit("delete", place.target)

    def rename(self, old: str, new: str, cwd: str = "/") -> Receipt | None:
        """Only `upload/x.part` (a finished upload to a temporary name) → `upload/x` is allowed.

        Renaming to the final name takes the file in (its receipt is returned); renaming to
        another temporary name keeps it staged.
        """
        src, dst = self._resolve(old, cwd), self._resolve(new, cwd)
        if src.name is None or dst.name is None:
            raise Forbidden("folders cannot be renamed")
        if src.folder != UPLOAD or dst.folder != UPLOAD:
            raise Forbidden("files can only be renamed in upload/, from a temporary name to their final name")
        staged = self._staged(src)
        if not is_in_progress_name(src.name) or not self._lstat_file(staged):
            if self._lstat_file(self._local(src)) or self._lstat_file(staged):
                suffixes = ", ".join(IN_PROGRESS_SUFFIXES)
                raise Forbidden(f"only an upload to a temporary name ({suffixes}) can be renamed")
            raise NoSuchFile(f"no such file: {src.path}")
        try:
            intake.check_file_name(dst.name)
        except intake.InvalidFileName as exc:
            raise InvalidName(str(exc)) from None
        if src == dst:
            return None
        with _registry_lock:
            if staged in _active:
                raise Busy(f"{src.path} is still being uploaded")
            known = _finished.pop(staged, None)
            dst_staged = self._staged(dst)
            if is_in_progress_name(dst.name):
                if dst_staged in _active:
                    raise Busy(f"{dst.path} is being uploaded by another session")
                os.replace(staged, dst_staged)
                if known:
                    _finished[dst_staged] = known
                self._audit("rename", src.target, to=dst.target)
                return None
            _active[staged] = _RENAMING  # no upload may reopen it while it is taken in
        try:
            st = os.stat(staged)
            if known and known[:2] == (st.st_size, st.st_mtime_ns):
                sha = known[2]
            else:
                fd = os.open(staged, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    sha = _sha256_of(fd, st.st_size).hexdigest()
                finally:
                    os.close(fd)
            receipt = self._take_in(dst, staged, sha)
        finally:
            with _registry_lock:
                _active.pop(staged, None)
        self._audit("rename", src.target, to=dst.target, receipt=receipt.id)
        return receipt

    def mkdir(self, path: str, cwd: str = "/") -> None:
        if self.is_dir(path, cwd):
            raise AlreadyExists(f"{self.normalize(path, cwd)} already exists")
        raise Forbidden("folders cannot be created: a mailbox has only /upload and /download")

    def rmdir(self, path: str, cwd: str = "/") -> None:
        raise Forbidden("folders cannot be removed: a mailbox has only /upload and /download")

    # --- open files ---------------------------------------------------------------------------

    def _take_file_slot(self) -> None:
        """Count one more open file of this partner's (`TRADELANE_MAX_OPEN_FILES_PER_PARTNER`)."""
        try:
            self.auth.open_files.acquire(self.user.partner_id)
        except LimitReached as exc:
            raise TooManyOpenFiles(str(exc)) from None

    def release_file_slot(self) -> None:
        self.auth.open_files.release(self.user.partner_id)

    # --- housekeeping -------------------------------------------------------------------------

    def sweep_partials(self, now: float | None = None) -> int:
        """Remove this partner's staged uploads older than the retention; cheap, rate-limited."""
        now = time.time() if now is None else now
        key = (HOME_ACCOUNT, self.user.name)
        with _registry_lock:
            if now - _last_sweep.get(key, 0.0) < _SWEEP_EVERY_SECONDS:
                return 0
            _last_sweep[key] = now
            removed = 0
            for folder in FOLDERS:
                try:
                    with os.scandir(self.staging / folder) as it:
                        items = list(it)
                except OSError:
                    continue
                for item in items:
                    path = Path(item.path)
                    if path in _active:
                        continue
                    with contextlib.suppress(OSError):
                        if item.stat(follow_symlinks=False).st_mtime < now - self.partial_retention:
                            path.unlink()
                            _finished.pop(path, None)
                            removed += 1
        if removed:
            log.info("removed %d stale partial upload(s) of %s", removed, self.user.name)
        return removed

    def _audit(self, action: str, target: str, **detail: object) -> None:
        try:
            self.auth.record(self.user, action, target, self.remote_addr, protocol=self.protocol, **detail)
        except Exception:  # an audit failure must not break the transfer that already happened
            log.exception("could not record audit event %s %s", action, target)

    def _take_in(self, place: _Place, staged: Path, sha256: str) -> Receipt:
        assert place.folder is not None and place.name is not None
        try:
            return intake.receive_staged(
                self.user,
                place.folder,
                place.name,
                staged,
                sha256=sha256,
                protocol=self.protocol,
                remote_addr=self.remote_addr,
            )
        except intake.UploadTooLarge as exc:
            with contextlib.suppress(OSError):
                staged.unlink()
            raise QuotaExceeded(str(exc)) from None
        except intake.InvalidFileName as exc:
            raise InvalidName(str(exc)) from None
        except intake.IntakeError as exc:
            raise MailboxError(str(exc)) from None


class UploadHandle:
    """One upload in progress. Not thread-safe: one session writes it.

    `write(data, offset)` with `offset=None` appends; an explicit offset may be anywhere up to the
    current end, never past it: a gap would read as zeros the client never sent (one byte at
    100 MiB would make a 100 MiB file), so such a write refuses the whole upload. Only in-order
    writes keep the SHA-256 incremental; rewriting earlier bytes costs one re-hash on completion.
    `complete()` takes the file in (or, for a temporary name, leaves it staged for a rename);
    `abandon()` keeps the staged bytes for a resume and triggers nothing.
    """

    def __init__(
        self,
        view: MailboxView,
        place: _Place,
        staged: Path,
        fd: int,
        size: int,
        start: int | None,
        append: bool,
    ) -> None:
        self.view = view
        self.place = place
        self.staged = staged
        self._fd = fd
        self._end = size  # bytes in the staging file
        self._start = start  # where this session's bytes begin; None until the first write says
        self._append = append
        self._fd_open = True
        self._sha = hashlib.sha256()
        self._hashed = 0  # the prefix `_sha` covers
        self._dirty = False  # an out-of-order write happened: re-hash on completion
        self._done = False
        self.received = 0  # bytes written in this session
        self.receipt: Receipt | None = None

    @property
    def path(self) -> str:
        return self.place.path

    @property
    def name(self) -> str:
        assert self.place.name is not None
        return self.place.name

    @property
    def size(self) -> int:
        return self._end

    @property
    def done(self) -> bool:
        return self._done

    def write(self, data: bytes | bytearray | memoryview, offset: int | None = None) -> None:
        if self._done:
            raise MailboxError("this upload is already finished")
        view = memoryview(data).cast("B")
        if self._start is None:
            # The first write of a resume-capable open says where the upload continues.
            at = self._end if offset is None else offset
            if at > self._end:
                raise MailboxError(f"cannot resume at byte {at}: {self._end} bytes were received")
            if at < self._end:
                os.ftruncate(self._fd, at)
                self._end = at
            self._start = at
        if offset is None or self._append:
            offset = self._end
        elif offset < 0:
            raise MailboxError("offset must not be negative")
        elif offset > self._end:
            self._discard(reason="gap")  # a client that leaves gaps cannot be resumed from either
            raise MailboxError(
                f"cannot write at byte {offset}: only {self._end} bytes were received, and a gap "
                "would be filled with zeros; the upload is refused: write the file in order"
            )
        end = offset + len(view)
        if end > self.view.max_file_bytes:
            self._discard(reason="size limit")
            raise QuotaExceeded(f"file is larger than the limit of {self.view.max_file_bytes} bytes")
        if not self._dirty and offset == self._end and self._hashed < offset:
            self._catch_up(offset)  # a resume: hash the staged prefix once
        self._pwrite(view, offset)
        if not self._dirty:
            if offset == self._hashed:
                self._sha.update(view)
                self._hashed = end
            else:
                self._dirty = True
        self._end = max(self._end, end)
        self.received += len(view)

    def _pwrite(self, view: memoryview, offset: int) -> None:
        try:
            written = os.pwrite(self._fd, view, offset)
            while written < len(view):  # short writes: rare on regular files, but legal
                written += os.pwrite(self._fd, view[written:], offset + written)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise MailboxError("no space left for this upload") from exc
            raise MailboxError(f"write failed: {exc.strerror}") from exc

    def _catch_up(self, upto: int) -> None:
        _sha256_of(self._fd, upto, self._sha, self._hashed)
        self._hashed = upto

    def _release(self) -> None:
        with _registry_lock:
            if _active.get(self.staged) is self:
                del _active[self.staged]
        if self._fd_open:
            self._fd_open = False
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self.view.release_file_slot()

    def _discard(self, reason: str) -> None:
        self._done = True
        self._release()
        with contextlib.suppress(OSError):
            self.staged.unlink()
        self.view._audit("upload.refused", self.place.target, size=self._end, reason=reason)

    def complete(self) -> Receipt | None:
        """The client says the file is whole: take it in (the receipt), or keep a temporary name staged."""
        if self._done:
            return self.receipt
        try:
            if self._dirty:
                sha = _sha256_of(self._fd, self._end).hexdigest()
            else:
                self._catch_up(self._end)
                sha = self._sha.hexdigest()
        except BaseException:
            self.abandon()
            raise
        self._done = True
        if is_in_progress_name(self.name):
            st = os.fstat(self._fd)
            self._release()
            with _registry_lock:
                _finished[self.staged] = (st.st_size, st.st_mtime_ns, sha)
            self.view._audit("upload.staged", self.place.target, size=self._end, sha256=sha)
            return None
        self._release()
        self.receipt = self.view._take_in(self.place, self.staged, sha)
        return self.receipt

    def abandon(self) -> None:
        """The client went away mid-upload: nothing shows, nothing is triggered, the bytes wait to resume."""
        if self._done:
            return
        self._done = True
        self._release()
        if self._end == 0:
            with contextlib.suppress(OSError):
                self.staged.unlink()
        if self.received:
            self.view._audit("upload.incomplete", self.place.target, received=self.received, size=self._end)


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
            self.view._audit("download", self.target, size=self.sent, file_size=self.size, offset=self.offset)
