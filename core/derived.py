"""Derived files: what a template's content-changing steps make from a receipt, with provenance.

A step (decrypt, compress, ...) reads the file a job carries - the receipt's kept file, or the last
derived file - and writes a new one into the transfer's staging folder, hashing it on the way:

    job = derive(job, "pgp-encrypt", lambda source, stage: encrypt_into(stage, source))

`derive` checks that the bytes it read are the ones the job carries (size and SHA-256), records
the chain on the transfer (`transfer.derived`: step, name, size, sha256 of each file), and returns
the job carrying the new file, which `delivery.push` then writes and verifies against that hash.
A file a step made in a run that died before the push is taken as it is (recorded, staged whole,
same hash), so even a step whose output differs each time is delivered once.

Staging: `<mailbox_root>/.tmp/derived/<transfer id>/<step number>/`, on the store's filesystem and
out of every login's reach. A step killed mid-way is simply run again: its folder is emptied first
(its half-written `.part` file is never a derived file). A transfer's folder is
removed when it is final (`discard`); `sweep` removes the folders of transfers that ended or vanished
while no run was there to tidy up (a kill between the last write and the record).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlmodel import col, select

from core.db import session_scope
from core.endpoints.base import CHUNK_SIZE
from core.mailbox import layout
from core.models import FINAL_STATES, Transfer
from core.transforms.staging import DerivedFile, FileIdentity, Staging
from core.validators import ValidationError

if TYPE_CHECKING:
    from core.delivery import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Carried:
    """The file a push carries: where it is on this machine, its name, size and SHA-256; for a
    derived file, also its identity when it was hashed (a push that links the very file in place
    and finds it unchanged takes that hash instead of reading every byte back). A receipt's kept
    file in an S3 storage is not on this machine: `stored` is its path in the storage, and
    `path` is only where it would be in a local one."""

    path: Path
    name: str
    size: int
    sha256: str
    identity: FileIdentity | None = None
    stored: str | None = None

    def open(self) -> BinaryIO:
        """Its bytes, streamed (from the storage bucket for a kept file there)."""
        if self.stored is not None:
            from core import storage

            return storage.open_storage().open_read(self.stored)
        return self.path.open("rb")


@dataclass(frozen=True)
class Derived:
    """One link of a transfer's chain: the step that made the file, and the file."""

    step: str
    name: str
    size: int
    sha256: str
    path: Path
    identity: FileIdentity | None = None

    def record(self) -> dict[str, Any]:
        """What the transfer keeps (the staging path is this run's business, not history)."""
        return {"step": self.step, "name": self.name, "size": self.size, "sha256": self.sha256}

    def carried(self) -> Carried:
        return Carried(self.path, self.name, self.size, self.sha256, self.identity)


class SourceChanged(Exception):
    """The bytes a step read are not the ones the job carries (the kept or staged file was damaged)."""


def staging_root() -> Path:
    return layout.temp_dir() / "derived"


def transfer_dir(transfer_id: int) -> Path:
    return staging_root() / str(transfer_id)


Write = Callable[[BinaryIO, Staging], DerivedFile | list[DerivedFile]]


def derive(job: Job, step: str, write: Write) -> Job:
    """Run `write(source, staging)` over the file `job` carries and return the job carrying the one
    derived file it made (named as `write` chose). `write` raises to refuse the file; whatever it
    staged is then removed. More than one file made is refused (one transfer delivers one file)."""
    carried = job.carried
    folder = transfer_dir(job.transfer_id) / f"{len(job.derived) + 1:02d}"
    kept = _made_before(job, step, folder)
    if kept is not None:
        return replace(job, derived=(*job.derived, kept))
    shutil.rmtree(folder, ignore_errors=True)  # a crashed run of this step left it: start over
    with Staging(folder) as stage, carried.open() as raw, _Reading(raw) as source:
        made = write(source, stage)  # type: ignore[arg-type]  # _Reading is read()-only by design
        files = made if isinstance(made, list) else [made]
        size, sha256 = source.finish()
        if size != carried.size or sha256 != carried.sha256:
            raise SourceChanged(f"{carried.name} changed since it was received (sha256 differs)")
        if len(files) != 1:
            names = ", ".join(f.name for f in files[:5])
            raise TooManyFiles(step, f"it holds {len(files)} files ({names}); a transfer delivers one file")
    file = files[0]
    link = Derived(step, file.name, file.size, file.sha256, file.path, file.identity)
    chain = (*job.derived, link)
    record(job.transfer_id, [d.record() for d in chain])
    return replace(job, derived=chain)


def _made_before(job: Job, step: str, folder: Path) -> Derived | None:
    """The file this step made for this transfer in a run that died before delivering it, if it is
    recorded and still staged whole: reused, not made again, so a step whose output differs each
    time (encryption's session key) still delivers exactly once after a crash."""
    with session_scope() as session:
        transfer = session.get(Transfer, job.transfer_id)
        chain = list(transfer.derived or []) if transfer is not None else []
    position = len(job.derived)
    if len(chain) <= position or chain[:position] != [d.record() for d in job.derived]:
        return None
    link = chain[position]
    staged = folder / "0001"
    if link.get("step") != step or not staged.is_file() or staged.stat().st_size != link.get("size"):
        return None
    with staged.open("rb") as stream, _Reading(stream) as reader:
        size, sha256 = reader.finish()
        identity = FileIdentity.of(os.fstat(stream.fileno()))
    if sha256 != link.get("sha256") or identity.size != size:
        return None
    return Derived(step, str(link["name"]), size, str(link["sha256"]), staged, identity)


class TooManyFiles(ValidationError):
    """A step made several files from one (an archive of many members): the file is rejected."""


class _Reading:
    """The carried file as a step reads it, hashed on the way, so what it used is what was carried.

    A step that runs a program (gpg) may hand it the file by name instead of piping it through
    Python (core.pgp.plumbing.file_on_disk calls `read_by_name`): the file is then hashed from its
    first byte in a thread of its own while the program reads it, rather than after it (`finish`).
    Use as a context manager: leaving it stops that thread before the file is closed.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self._background: _BackgroundHash | None = None

    def __enter__(self) -> _Reading:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._background is not None:
            self._background.stop()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return str(getattr(self._raw, "name", ""))

    def fileno(self) -> int:
        return self._raw.fileno()

    def tell(self) -> int:
        return self._raw.tell()

    def read_by_name(self) -> None:
        """The step hands the whole file to a program by its name: hash it meanwhile."""
        if self._background is None:
            self._background = _BackgroundHash(self._raw.fileno())

    def finish(self) -> tuple[int, str]:
        """Size and SHA-256 of the whole file: what the step read, and what it left unread (a
        format may stop at its end marker), or, when a program read it by name, the file's."""
        if self._background is not None:
            return self._background.result()
        while self.read(CHUNK_SIZE):
            pass
        return self.size, self.sha.hexdigest()


class _BackgroundHash:
    """Size and SHA-256 of an open file from its first byte, computed in a thread (positioned reads
    on a duplicate descriptor: the file's own position is the step's). hashlib lets go of the GIL,
    so this runs beside the step on another core."""

    def __init__(self, fd: int) -> None:
        self._fd = os.dup(fd)
        self._sha = hashlib.sha256()
        self._size = 0
        self._failure: OSError | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="derived-source-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        try:
            while not self._stopped.is_set():
                n = os.preadv(self._fd, [buffer], self._size)
                if not n:
                    break
                self._sha.update(view[:n])
                self._size += n
        except OSError as exc:
            self._failure = exc
        finally:
            os.close(self._fd)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def result(self) -> tuple[int, str]:
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        return self._size, self._sha.hexdigest()


def record(transfer_id: int, chain: list[dict[str, Any]] | None = None, **extra: Any) -> None:
    """Write the transfer's chain (and `envelope=...`) now, so a failed transfer shows how far it got."""
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None:
            return
        if chain is not None:
            transfer.derived = chain
        if "envelope" in extra:
            transfer.envelope = extra["envelope"]
        session.add(transfer)


def local_copy(transfer_id: int, carried: Carried) -> Carried:
    """A kept file from the storage bucket, copied into the transfer's staging folder for a
    destination that needs a local file (a peer resumes from an offset), hashed on the way:
    SourceChanged unless it is the carried file. Removed with the transfer's other staged files."""
    folder = transfer_dir(transfer_id) / "kept"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "file"
    sha = hashlib.sha256()
    size = 0
    with carried.open() as source, path.open("wb") as out:
        while chunk := source.read(CHUNK_SIZE):
            sha.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size != carried.size or sha.hexdigest() != carried.sha256:
        path.unlink(missing_ok=True)
        raise SourceChanged(f"{carried.name} changed since it was received (sha256 differs)")
    return Carried(path, carried.name, carried.size, carried.sha256)


def discard(transfer_id: int) -> None:
    """Remove a final transfer's derived files."""
    shutil.rmtree(transfer_dir(transfer_id), ignore_errors=True)


def sweep() -> int:
    """Remove the staging folders of transfers that are final or gone; how many were removed."""
    root = staging_root()
    try:
        ids = {int(p.name): p for p in root.iterdir() if p.name.isdigit()}
    except FileNotFoundError:
        return 0
    if not ids:
        return 0
    with session_scope() as session:
        live = set(
            session.exec(
                select(Transfer.id).where(
                    col(Transfer.id).in_(list(ids)), col(Transfer.state).not_in(list(FINAL_STATES))
                )
            )
        )
    removed = 0
    for transfer_id, path in ids.items():
        if transfer_id not in live:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed the derived files of %d finished transfers", removed)
    return removed
