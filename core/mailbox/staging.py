"""Resumable uploads: bytes staged outside the home until the client says the file is complete.

SFTP and FTP clients resume broken uploads, so their bytes cannot live in intake's private
temporary file: each upload is written to `<mailbox_root>/.partial/<account>/<partner>/<folder>/<name>`
(`layout.staging`), where nothing shows in the home and nothing is triggered. When the client says
the file is whole (`StagedUpload.complete()`: an SFTP close, the end of an FTP STOR) the session
hands it to `core.intake.receive_staged`, which takes it in through the same commit as every other
upload. A broken upload (`abandon()`: connection dropped, client killed) keeps its bytes:

* `Staging.stat()` gives the staged size while an unfinished upload exists (what OpenSSH's
  `reput`/`put -a`, WinSCP and FTP `SIZE` + `REST`/`APPE` ask before resuming);
* `Staging.open(..., offset=N)` keeps the first N staged bytes, `append=True` continues after all
  of them, `offset=None` lets the first write's offset decide;
* `Staging.resume_at(..., offset=N)` is the exact resume a browser upload (tus, api/web/tus.py)
  needs: it writes only when N is the staged size (`OffsetMismatch` otherwise) and never truncates,
  so a request a browser re-sends from an old offset cannot destroy bytes already received;
* the SHA-256 always covers the whole file: a resume re-hashes the staged prefix once, and writes
  that arrive out of order are allowed (as on any POSIX file) at the price of one re-hash of the
  file on completion. A handle that ends without completing (`pause()` on a clean end, `abandon()`
  on a broken one) leaves its running hash in this process, so the next resume at the staged size
  continues it instead of re-reading the file (a browser upload in many chunks would otherwise
  re-hash O(n²) bytes).

Uploads to temporary names (`layout.is_in_progress_name`) stay staged when they complete; renaming
one to its final name (`Staging.rename`) takes it in. Staged files older than `retention` are
removed by a cheap, rate-limited look at one partner's staging folder (`Staging.sweep`).

One upload at a time per file, across all sessions of this process (`Busy` otherwise).

With the storage on S3 (core/storage.py) an upload that starts from its first byte and is written
in order is also streamed, as it arrives, into a multipart upload in the bucket (one part in
flight, so at most two parts in memory), which becomes the receipt's kept object when the file is
complete: the close does not wait for a copy. Anything else (a resume, a write out of order, a
temporary name, a failure of the bucket) aborts that multipart upload, and the staged file is
copied into the bucket on completion instead. A broken upload aborts it: nothing is in the bucket.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat as stat_mod
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from core import receipt_files, storage
from core.endpoints.base import WriteStream
from core.mailbox import layout
from core.mailbox.errors import Busy, Forbidden, MailboxError, OffsetMismatch, QuotaExceeded
from core.models import Receipt

if TYPE_CHECKING:
    from core.intake import Also

log = logging.getLogger(__name__)

PARTIAL_RETENTION_SECONDS: Final = 24 * 3600.0
# A partner's staging folder is looked at for stale files at most this often.
_SWEEP_EVERY_SECONDS = 60.0
_READ_CHUNK = 1024 * 1024


class UploadOwner(Protocol):
    """The session a staged upload belongs to: its size limit, open-file count, audit and intake."""

    @property
    def max_file_bytes(self) -> int: ...
    def take_file_slot(self) -> None: ...
    def release_file_slot(self) -> None: ...
    def audit(self, action: str, target: str, **detail: object) -> None: ...
    def take_in(
        self, folder: str, name: str, staged: Path, sha256: str, also: Also | None = None
    ) -> Receipt: ...


# Uploads being written (or renamed into place) right now, by staging path: one at a time per file.
_active: dict[Path, object] = {}
_RENAMING = object()
# Hashes of completed uploads to temporary names, so the rename to the final name need not re-read
# them: staging path -> (size, mtime_ns, sha256).
_finished: dict[Path, tuple[int, int, str]] = {}
# Running hashes of unfinished uploads that ended without completing (pause/abandon), so a resume at
# the staged size need not re-read the prefix: staging path -> (size, mtime_ns, sha256 object).
_paused: dict[Path, tuple[int, int, hashlib._Hash]] = {}
_registry_lock = threading.Lock()
_last_sweep: dict[Path, float] = {}


def sha256_of(fd: int, end: int, sha: hashlib._Hash | None = None, start: int = 0) -> hashlib._Hash:
    """Hash bytes `start..end` of an open file into `sha` (a new one by default)."""
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


def _paused_hash(staged: Path, fd: int, at: int) -> hashlib._Hash | None:
    """The running hash a paused handle left for exactly the first `at` bytes of this very file
    (same size and mtime as then), taken out of the cache; call under `_registry_lock`."""
    kept = _paused.pop(staged, None)
    if kept is None:
        return None
    size, mtime_ns, sha = kept
    st = os.fstat(fd)
    if size != at or st.st_size != size or st.st_mtime_ns != mtime_ns:
        return None
    return sha


def lstat_file(path: Path) -> os.stat_result | None:
    """The path's own stat if it is a regular file (never following a link), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat_mod.S_ISREG(st.st_mode) else None


class Staging:
    """One login's staged uploads."""

    retention: float = PARTIAL_RETENTION_SECONDS

    def __init__(self, account: str, partner: str) -> None:
        self.root = layout.staging(account, partner)

    def path(self, folder: str, name: str) -> Path:
        return self.root / folder / name

    def stat(self, folder: str, name: str) -> os.stat_result | None:
        return lstat_file(self.path(folder, name))

    def open(
        self,
        owner: UploadOwner,
        folder: str,
        name: str,
        *,
        offset: int | None = 0,
        append: bool = False,
        received: bool = False,
    ) -> StagedUpload:
        """Start (or resume) an upload; `received`: a file of that name was already taken in.

        `offset=0` starts afresh; `offset=N` resumes after the first N staged bytes (FTP REST);
        `append=True` resumes after all staged bytes (SFTP APPEND, FTP APPE); `offset=None`
        keeps what is staged and lets the first write's offset say where the upload resumes.
        """
        shown = f"/{folder}/{name}"
        if offset is not None and offset < 0:
            raise MailboxError("offset must not be negative")
        staged = self.path(folder, name)
        with _registry_lock:
            if staged in _active:
                raise Busy(f"{shown} is being uploaded by another session")
            owner.take_file_slot()
            try:
                fd, created = _open_staged(staged)
            except OSError as exc:
                owner.release_file_slot()
                raise MailboxError(f"cannot open {shown}: {exc.strerror}") from exc
            try:
                have = os.fstat(fd).st_size
                if (append or bool(offset)) and have == 0 and received:
                    raise Forbidden(
                        f"{shown} was already received and cannot be appended to; upload it whole"
                    )
                start: int | None
                if append:
                    start = have
                elif offset is None:
                    start = None
                elif offset > have:
                    raise MailboxError(f"cannot resume {shown} at byte {offset}: {have} bytes were received")
                else:
                    start = offset
                if start is not None and start < have:
                    os.ftruncate(fd, start)
                    have = start
                hashed = _paused_hash(staged, fd, have) if start == have else None
            except BaseException:
                os.close(fd)
                owner.release_file_slot()
                if created:  # a refused resume leaves no empty staging file behind
                    with contextlib.suppress(OSError):
                        staged.unlink()
                raise
            handle = StagedUpload(owner, folder, name, staged, fd, have, start, append, hashed)
            _active[staged] = handle
            _finished.pop(staged, None)
            _paused.pop(staged, None)
        return handle

    def resume_at(self, owner: UploadOwner, folder: str, name: str, offset: int) -> StagedUpload:
        """Continue an upload exactly at `offset`, which must be the staged size (0 for a new one).

        Decided before a byte is read: `Busy` if another handle writes the file, `OffsetMismatch`
        (with the staged size) if `offset` is not exactly what is staged. Unlike `open(offset=N)`
        (FTP's REST, which truncates to N) nothing is ever truncated: a request re-sent from an old
        offset is refused, not allowed to cut off what later requests wrote.
        """
        shown = f"/{folder}/{name}"
        if offset < 0:
            raise MailboxError("offset must not be negative")
        staged = self.path(folder, name)
        with _registry_lock:
            if staged in _active:
                raise Busy(f"{shown} is being uploaded by another session")
            st = lstat_file(staged)
            have = st.st_size if st else 0
            if have != offset:
                raise OffsetMismatch(f"{shown} has {have} bytes staged, not {offset}: resume at {have}", have)
            owner.take_file_slot()
            try:
                fd, created = _open_staged(staged)
            except OSError as exc:
                owner.release_file_slot()
                raise MailboxError(f"cannot open {shown}: {exc.strerror}") from exc
            try:
                have = os.fstat(fd).st_size
                if have != offset:  # changed between the look and the open (another process)
                    raise OffsetMismatch(f"{shown} has {have} bytes staged, not {offset}", have)
                hashed = _paused_hash(staged, fd, have)
            except BaseException:
                os.close(fd)
                owner.release_file_slot()
                if created:
                    with contextlib.suppress(OSError):
                        staged.unlink()
                raise
            handle = StagedUpload(owner, folder, name, staged, fd, have, have, False, hashed)
            _active[staged] = handle
            _finished.pop(staged, None)
        return handle

    def discard(self, folder: str, name: str) -> bool:
        """Remove an unfinished upload (the client gave it up); whether there was one."""
        staged = self.path(folder, name)
        with _registry_lock:
            if staged in _active:
                raise Busy(f"/{folder}/{name} is being uploaded by another session")
            _paused.pop(staged, None)
            if not lstat_file(staged):
                return False
            staged.unlink()
            _finished.pop(staged, None)
            return True

    def rename(self, owner: UploadOwner, src: tuple[str, str], dst: tuple[str, str]) -> Receipt | None:
        """Rename a finished upload to a temporary name: to another temporary name it stays staged
        (None), to its final name it is taken in (the receipt)."""
        staged, dst_staged = self.path(*src), self.path(*dst)
        with _registry_lock:
            if staged in _active:
                raise Busy(f"/{'/'.join(src)} is still being uploaded")
            known = _finished.pop(staged, None)
            if layout.is_in_progress_name(dst[1]):
                if dst_staged in _active:
                    raise Busy(f"/{'/'.join(dst)} is being uploaded by another session")
                os.replace(staged, dst_staged)
                if known:
                    _finished[dst_staged] = known
                return None
            _active[staged] = _RENAMING  # no upload may reopen it while it is taken in
        try:
            st = os.stat(staged)
            if known and known[:2] == (st.st_size, st.st_mtime_ns):
                sha = known[2]
            else:
                fd = os.open(staged, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    sha = sha256_of(fd, st.st_size).hexdigest()
                finally:
                    os.close(fd)
            return owner.take_in(dst[0], dst[1], staged, sha)
        finally:
            with _registry_lock:
                _active.pop(staged, None)

    def sweep(self, now: float | None = None, folders: tuple[str, ...] = layout.FOLDERS) -> int:
        """Remove staged uploads older than the retention from `folders` (a partner's, by default);
        cheap, at most once a minute per login."""
        now = time.time() if now is None else now
        removed = 0
        with _registry_lock:
            if now - _last_sweep.get(self.root, 0.0) < _SWEEP_EVERY_SECONDS:
                return 0
            _last_sweep[self.root] = now
            for folder in folders:
                try:
                    with os.scandir(self.root / folder) as it:
                        items = list(it)
                except OSError:
                    continue
                for item in items:
                    path = Path(item.path)
                    if path in _active:
                        continue
                    with contextlib.suppress(OSError):
                        if item.stat(follow_symlinks=False).st_mtime < now - self.retention:
                            path.unlink()
                            _finished.pop(path, None)
                            _paused.pop(path, None)
                            removed += 1
        return removed


class StagedUpload:
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
        owner: UploadOwner,
        folder: str,
        name: str,
        staged: Path,
        fd: int,
        size: int,
        start: int | None,
        append: bool,
        hashed: hashlib._Hash | None = None,
    ) -> None:
        self.owner = owner
        self.folder = folder
        self.name = name
        self.staged = staged
        self._fd = fd
        self._end = size  # bytes in the staging file
        self._start = start  # where this session's bytes begin; None until the first write says
        self._append = append
        self._fd_open = True
        # The prefix `_sha` covers: a paused handle's hash of the staged bytes, else none yet.
        self._sha = hashed if hashed is not None else hashlib.sha256()
        self._hashed = size if hashed is not None else 0
        self._dirty = False  # an out-of-order write happened: re-hash on completion
        self._done = False
        self.received = 0  # bytes written in this session
        self.receipt: Receipt | None = None
        # The bytes streamed into the storage bucket as they arrive (see the module's docstring).
        self._tee: tuple[WriteStream, str] | None = None

    @property
    def target(self) -> str:
        """`folder/name`, as audit events and receipts say it."""
        return f"{self.folder}/{self.name}"

    @property
    def path(self) -> str:
        """The path the client sees."""
        return f"/{self.target}"

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
        if end > self.owner.max_file_bytes:
            self._discard(reason="size limit")
            raise QuotaExceeded(f"file is larger than the limit of {self.owner.max_file_bytes} bytes")
        if not self._dirty and offset == self._end and self._hashed < offset:
            self._catch_up(offset)  # a resume: hash the staged prefix once
        self._pwrite(view, offset)
        self._stream_out(view, offset)
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

    def _stream_out(self, view: memoryview, offset: int) -> None:
        """Send in-order bytes of a fresh upload on to the bucket; anything else stops that."""
        fresh = offset == 0 and self._end == 0 and self._tee is None and self._start == 0
        if fresh and storage.is_object_store() and not layout.is_in_progress_name(self.name):
            try:
                self._tee = receipt_files.open_write(self.target, lean=True)
            except Exception:
                log.warning("could not stream %s into the storage; copied at the end", self.target)
        if self._tee is None:
            return
        stream = self._tee[0]
        if offset != stream.bytes_written:
            self._drop_tee()
            return
        try:
            stream.write(view)
        except Exception:
            log.warning("streaming %s into the storage failed; copied at the end", self.target, exc_info=True)
            self._drop_tee()

    def _drop_tee(self) -> None:
        tee, self._tee = self._tee, None
        if tee is not None:
            with contextlib.suppress(Exception):
                tee[0].abort()

    def _keep_tee(self) -> bool:
        """Commit what was streamed into the bucket if it is the whole file; whether it was."""
        tee, self._tee = self._tee, None
        if tee is None:
            return False
        stream, kept = tee
        if self._dirty or stream.bytes_written != self._end:
            with contextlib.suppress(Exception):
                stream.abort()
            return False
        try:
            stream.commit()
        except Exception:
            log.warning("completing %s in the storage failed; copied instead", self.target, exc_info=True)
            return False
        receipt_files.prekeep(self.staged, kept, self._end)
        return True

    def _catch_up(self, upto: int) -> None:
        sha256_of(self._fd, upto, self._sha, self._hashed)
        self._hashed = upto

    def _release(self) -> None:
        with _registry_lock:
            if _active.get(self.staged) is self:
                del _active[self.staged]
        if self._fd_open:
            self._fd_open = False
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self.owner.release_file_slot()

    def _discard(self, reason: str) -> None:
        self._drop_tee()
        self._done = True
        self._release()
        with contextlib.suppress(OSError):
            self.staged.unlink()
        self.owner.audit("upload.refused", self.target, size=self._end, reason=reason)

    def complete(self, also: Also | None = None) -> Receipt | None:
        """The client says the file is whole: take it in (the receipt), or keep a temporary name staged.
        `also` runs in the receipt's transaction (a tus upload's row is marked done there)."""
        if self._done:
            return self.receipt
        try:
            if self._dirty:
                sha = sha256_of(self._fd, self._end).hexdigest()
            else:
                self._catch_up(self._end)
                sha = self._sha.hexdigest()
        except BaseException:
            self.abandon()
            raise
        self._done = True
        if layout.is_in_progress_name(self.name):
            self._drop_tee()
            st = os.fstat(self._fd)
            self._release()
            with _registry_lock:
                _finished[self.staged] = (st.st_size, st.st_mtime_ns, sha)
            self.owner.audit("upload.staged", self.target, size=self._end, sha256=sha)
            return None
        self._release()
        prekept = self._keep_tee()
        try:
            self.receipt = self.owner.take_in(self.folder, self.name, self.staged, sha, also)
        finally:
            if prekept:
                receipt_files.forget_prekept(self.staged)  # (a no-op once intake kept it)
        return self.receipt

    def abandon(self) -> None:
        """The client went away mid-upload: nothing shows, nothing is triggered, the bytes wait to resume."""
        if self._stop():
            self.owner.audit("upload.incomplete", self.target, received=self.received, size=self._end)

    def pause(self) -> None:
        """A request that carried part of the file ended cleanly (a tus PATCH): release the file,
        keep its bytes and its running hash for the next part; no event (the upload goes on)."""
        self._stop()

    def _stop(self) -> bool:
        """Release the file, keeping the bytes (and the running hash, when in order) for a resume;
        whether this session had written anything."""
        if self._done:
            return False
        self._drop_tee()
        self._done = True
        keep = None
        if not self._dirty and self._end > 0 and self._hashed == self._end:
            with contextlib.suppress(OSError):
                keep = (self._end, os.fstat(self._fd).st_mtime_ns, self._sha)
        self._release()
        if self._end == 0:
            with contextlib.suppress(OSError):
                self.staged.unlink()
        elif keep is not None:
            with _registry_lock:
                if self.staged not in _active:
                    _paused[self.staged] = keep
        return self.received > 0
