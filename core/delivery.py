"""Carrying one receipt through one data flow: read the source, check it, write the destination.

Prefect-free so the same steps can be tested without a server; tasks/ wraps each in a task.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from core import derived, receipt_files, rowlock, storage, transfers
from core.config import get_settings
from core.db import get_engine, session_scope
from core.derived import Carried, Derived
from core.endpoints import conflict
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import (
    CHUNK_SIZE,
    Deferrable,
    Endpoint,
    EndpointError,
    InvalidPath,
    NotFound,
    OnConflict,
    clean_path,
)
from core.endpoints.file import FileEndpoint, LinkedWriteStream
from core.endpoints.registry import endpoint_class
from core.models import (
    FINAL_STATES,
    Connection,
    ConnectionState,
    DataFlow,
    Partner,
    Receipt,
    Transfer,
    TransferState,
)
from core.models import Endpoint as EndpointRow
from core.redact import scrub_known
from core.transforms.staging import FileIdentity
from core.validators import ValidationError, validate_stream


class ChecksumMismatch(EndpointError):
    """The source no longer holds the bytes that were received (replaced or damaged)."""


class TransferTaken(EndpointError):
    """The run no longer holds the transfer it is writing: the dispatcher found the run dead (its
    heartbeats stopped reaching Prefect) and gave the file to another run. Nothing is written,
    and retrying would not change that."""


class FolderMissing(NotFound):
    """A B2B connection's receiving folder was removed: the file must not land in a re-created one."""


@dataclass(frozen=True)
class Job:
    """Everything one transfer needs, read once from the database (no secrets: rows are opened lazily)."""

    transfer_id: int
    receipt: Receipt
    flow: DataFlow
    partner_name: str
    dest_row: EndpointRow
    # An earlier try of this file by this data flow may have written it (a crash, a retry, a
    # replay): the destination is checked for it before a rename-or-fail write (see push).
    tried_before: bool = False
    # Files the template's steps made from the receipt, in order (core/derived.py); the last is carried.
    derived: tuple[Derived, ...] = ()
    # The EDI envelope values edi-route read (recorded on the transfer too), for the run's table.
    envelope: dict[str, Any] | None = None
    # The flow run that took the transfer (`start_run`): only it records the outcome (`record`).
    flow_run_id: str | None = None
    # The partner whose mailbox (`mailbox:NAME`, its download/) the destination is, if it is one:
    # its events name it as `recipient` (its contacts may be told, core/notify/partner_notices.py).
    recipient_id: int | None = None

    @property
    def on_conflict(self) -> OnConflict:
        return conflict.effective(self.flow.on_conflict, self.dest_row.type)

    @property
    def source_path(self) -> str:
        return receipt_files.locate(self.receipt)

    def open_source(self) -> Endpoint:
        # Receipts point into the storage (a folder or a bucket): the receipt's own kept file.
        return storage.open_storage()

    @property
    def carried(self) -> Carried:
        """The file this push carries: the last derived file, or the receipt's kept file."""
        if self.derived:
            return self.derived[-1].carried()
        source = self.source_path
        path = get_settings().mailbox_root / source
        stored = source if storage.is_object_store() else None
        return Carried(path, self.receipt.name, self.receipt.size, self.receipt.sha256, stored=stored)

    def open_dest(self) -> Endpoint:
        return endpoint_rows.open_row(self.dest_row)

    @property
    def dest_path(self) -> str:
        return render_dest_path(self.flow.dest_path, self.receipt, self.partner_name, self.carried.name)


def load(transfer_id: int) -> Job:
    with session_scope() as session:
        return _job(session, transfer_id)


def _job(session: Session, transfer_id: int) -> Job:
    transfer = session.get(Transfer, transfer_id)
    if transfer is None:
        raise LookupError(f"no transfer {transfer_id}")
    receipt = session.get(Receipt, transfer.receipt_id)
    flow = session.get(DataFlow, transfer.data_flow_id)
    assert receipt is not None and flow is not None
    dest_row = session.get(EndpointRow, flow.dest_endpoint_id)
    if dest_row is None:
        raise LookupError(f"data flow {flow.name!r} has no destination endpoint")
    partner = session.get(Partner, receipt.partner_id) if receipt.partner_id else None
    tried = transfer.attempts > 0 or transfer.replay_of is not None
    partner_name = partner.name if partner else "remote"
    return Job(
        transfer_id,
        receipt,
        flow,
        partner_name,
        dest_row,
        tried,
        flow_run_id=transfer.flow_run_id,
        recipient_id=recipient_id(session, dest_row),
    )


def recipient_id(session: Session, dest_row: EndpointRow) -> int | None:
    """The partner whose mailbox `dest_row` is (`mailbox:NAME`), else None."""
    if dest_row.type != "mailbox":
        return None
    return session.exec(
        select(Partner.id).where(
            Partner.account_id == dest_row.account_id,
            Partner.name == dest_row.config.get("partner"),
        )
    ).first()


def _jobs(session: Session, transfer_ids: list[int]) -> list[Job]:
    """`_job` for each id, in order, reading the transfers and their receipts in one statement
    (their data flow, destination and partner are read once each: the session keeps them)."""
    if not transfer_ids:
        return []
    # Held here: the session's identity map keeps only what something references.
    rows: list[Any] = list(
        session.exec(
            select(Transfer, Receipt)
            .join(Receipt, col(Receipt.id) == Transfer.receipt_id)
            .where(col(Transfer.id).in_(transfer_ids))
            .execution_options(populate_existing=True)
        ).all()
    )
    partner_ids = {receipt.partner_id for _, receipt in rows if receipt.partner_id is not None}
    if partner_ids:
        rows += session.exec(select(Partner).where(col(Partner.id).in_(partner_ids))).all()
    return [_job(session, transfer_id) for transfer_id in transfer_ids]


def render_dest_path(template: str, receipt: Receipt, partner_name: str, name: str | None = None) -> str:
    """Expand {name} {stem} {suffix} {partner} {date} {time} {receipt} {sha256}; refuse escapes.

    {name}, {stem} and {suffix} are the carried file's (`name`: a derived file's, `po.edi.pgp`),
    by default the receipt's; {sha256} is always the receipt's (what arrived)."""
    name = receipt.name if name is None else name
    stem, suffix = posixpath.splitext(name)
    received = receipt.received_at.astimezone(UTC) if receipt.received_at.tzinfo else receipt.received_at
    try:
        rendered = template.format(
            name=name,
            stem=stem,
            suffix=suffix,
            partner=partner_name,
            date=received.strftime("%Y-%m-%d"),
            time=received.strftime("%H%M%S"),
            receipt=receipt.id,
            sha256=receipt.sha256,
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidPath(f"bad destination path template {template!r}: {exc}") from exc
    return clean_path(rendered)


def start(transfer_ids: list[int]) -> list[Job]:
    """Mark a batch's transfers running and load their jobs, in one transaction.

    Transfers already final are left out: a batch run again after a crash carries only what is left.
    """
    return start_run(transfer_ids, None).jobs


@dataclass(frozen=True)
class Left:
    """A file of the batch that this run does not carry, and the word on it: the state of the
    newest transfer of that file by this data flow (`latest_id`)."""

    transfer_id: int
    name: str
    state: str
    latest_id: int
    error: str | None
    next_attempt_at: datetime | None = None

    def delivered(self) -> bool:
        return self.state == TransferState.delivered

    def describe(self) -> str:
        if self.state == TransferState.rejected:
            return (
                f"{self.name}: rejected ({self.error}); a retry does not change that: send a corrected file"
            )
        if self.state == TransferState.failed:
            return (
                f"{self.name}: failed ({self.error}); carry it again with `tradelane replay {self.latest_id}`"
            )
        if self.state in (TransferState.pending, TransferState.running):
            return f"{self.name}: being carried by transfer {self.latest_id} in another run"
        if self.state == TransferState.waiting:
            return waiting_message(self.name, self.error, self.next_attempt_at)
        return f"{self.name}: {self.state} (transfer {self.latest_id})"


@dataclass(frozen=True)
class RunStart:
    """What a flow run carries (`jobs`), what it leaves (`left`), and how many of its jobs are
    failed files it carries again because it was started again (Prefect's Retry)."""

    jobs: list[Job]
    left: list[Left]
    again: int = 0
    # Files that were waiting for a later run, carried at once because this run was started again.
    woken: int = 0


def start_run(transfer_ids: list[int], flow_run_id: str | None) -> RunStart:
    """`start` for the flow run `flow_run_id`, which may be running the batch again.

    Pressing Retry on a failed run in the Prefect UI starts the same run again with the same
    parameters. Its failed transfers are then carried again: each as a replay made by and for
    this run (the operator's gesture is a replay); rejected files stay rejected (their content
    is wrong), and files already delivered, or being carried by another run, are left with what
    became of them.
    """
    started: list[int] = []
    left: list[Left] = []
    again = woken = 0
    with session_scope() as session:
        rowlock.lock_all(session, Transfer, transfer_ids)  # in one order: two runs never deadlock
        # The batch's rows in one read and its open files taken in one UPDATE: a batch costs a
        # few statements, not a few per file.
        found = {t.id: t for t in session.exec(select(Transfer).where(col(Transfer.id).in_(transfer_ids)))}
        is_open = [i for i in transfer_ids if i in found and found[i].state not in FINAL_STATES]
        taken = transfers.take_all(session, is_open, flow_run_id)
        for transfer_id in transfer_ids:
            transfer = found.get(transfer_id)
            if transfer is None:
                continue
            if transfer.state not in FINAL_STATES:
                if transfer_id in taken:
                    woken += transfer.state == TransferState.waiting
                    started.append(transfer_id)
                else:  # the dispatcher gave it to another run meanwhile (it waited, and woke)
                    session.refresh(transfer)
                    name = receipt.name if (receipt := session.get(Receipt, transfer.receipt_id)) else "?"
                    left.append(
                        Left(
                            transfer_id,
                            name,
                            transfer.state,
                            transfer_id,
                            transfer.error,
                            transfer.next_attempt_at,
                        )
                    )
                continue
            latest = transfers.latest_of(session, transfer)
            assert latest.id is not None
            ours = flow_run_id is not None and latest.flow_run_id == flow_run_id
            if ours and latest.state not in FINAL_STATES:  # this run's earlier try died mid-way
                transfers.mark_running(session, latest)
                started.append(latest.id)
                continue
            if ours and latest.state == TransferState.failed:
                copy = transfers.carry_again(session, latest, flow_run_id or "")
                if copy is not None:
                    assert copy.id is not None
                    started.append(copy.id)
                    again += 1
                    continue
                latest = transfers.latest_of(session, transfer)  # the replay another run took
            assert latest.id is not None
            receipt = session.get(Receipt, transfer.receipt_id)
            name = receipt.name if receipt else "?"
            left.append(Left(transfer_id, name, latest.state, latest.id, latest.error))
        session.commit()  # running is recorded even if a job below cannot be loaded
        return RunStart(_jobs(session, started), left, again, woken)


# What a run's message adds to each waiting file.
WAITING_NOTE = " — the file is kept and a later run carries it"


def waiting_result(error: str, next_attempt_at: datetime | None) -> str:
    """A waiting file's result in a run's table and message: "waiting: destination unreachable: …,
    next try 08:03 (UTC)"."""
    when = f", next try {next_attempt_at.astimezone(UTC):%H:%M} (UTC)" if next_attempt_at else ""
    return f"waiting: {error}{when}"


def waiting_message(name: str, error: str | None, next_attempt_at: datetime | None) -> str:
    """How a run says a file waits: "po.json waiting: destination unreachable: …, next try 08:03
    (UTC) — the file is kept and a later run carries it"."""
    return f"{name} {waiting_result(error or 'destination unreachable', next_attempt_at)}{WAITING_NOTE}"


def count_attempts(transfer_ids: list[int]) -> None:
    """One more try for each transfer, written before the try so a crash mid-push still counts it."""
    with session_scope() as session:
        transfers.count_attempts(session, transfer_ids)


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Hashing:
    """Wraps a readable stream, hashing and counting what passes through."""

    def __init__(self, stream: Readable) -> None:
        self.stream = stream
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


def check(job: Job) -> None:
    """Run the data flow's validators over one streamed pass of the source. Raises ValidationError."""
    if not job.flow.validators:
        return
    with job.open_source() as source, source.open_read(job.source_path) as stream:
        _, sha256 = validate_stream(job.flow.validators, job.receipt.name, stream)
    if sha256 != job.receipt.sha256:
        raise ChecksumMismatch(f"{job.source_path} changed since it was received (sha256 differs)")


@dataclass(frozen=True)
class Delivered:
    """Where a file landed, and what the destination said about it (see WriteStream.answer)."""

    uri: str
    answer: dict[str, Any] | None = None


@dataclass(frozen=True)
class PushKey:
    """What makes a push idempotent at a destination that keeps its own record (a peer instance):
    the original transfer - the root of its `replay_of` chain, so a retry, a crash requeue or a
    replay carries the same - and the SHA-256 of the bytes."""

    transfer_id: int
    sha256: str


@runtime_checkable
class KeptFileSink(Protocol):
    """A destination that takes the carried file's local path rather than a stream of it (the `peer`
    endpoint: it resumes from the offset the peer already holds). It checks for itself that a
    file it already took is not taken again, so `push` does not read the destination back."""

    def send_kept(self, file: Carried, key: PushKey) -> Delivered: ...


def original_transfer_id(transfer_id: int) -> int:
    """The root of a transfer's `replay_of` chain (itself when it is no replay)."""
    with session_scope() as session:
        current = session.get(Transfer, transfer_id)
        while current is not None and current.replay_of is not None:
            transfer_id = current.replay_of
            current = session.get(Transfer, transfer_id)
    return transfer_id


def push(job: Job, again: bool = False) -> Delivered:
    """Stream the carried file → destination, committing only if the bytes match its hash.

    The carried file (`Job.carried`) is the receipt's kept file, or the last file the template's
    steps derived from it; below, "the receipt's bytes" are the carried file's (size and SHA-256).
    The write takes the data flow's on_conflict. Exactly once: when an earlier try may have
    written the file (`again`, a retry within the run; `job.tried_before`, a crash, a replay),
    a file already at the name, or at one of its numbered names, that holds exactly the
    receipt's bytes (size and SHA-256) is taken as this delivery and not written again, so a
    retry never leaves `name (2)` beside the first copy. A `KeptFileSink` gets the kept file's
    path instead, and keeps its own record of what it took.
    """
    if issubclass(endpoint_class(job.dest_row.type), KeptFileSink):
        with job.open_dest() as sink:
            assert isinstance(sink, KeptFileSink)
            carried = job.carried  # the kept file, or the last file a template's step made from it
            if carried.stored is not None:  # in a bucket: the sink resumes from a local file
                try:
                    carried = derived.local_copy(job.transfer_id, carried)
                except derived.SourceChanged as exc:
                    raise ChecksumMismatch(str(exc)) from None
            key = PushKey(original_transfer_id(job.transfer_id), carried.sha256)
            return sink.send_kept(carried, key)
    dest_path, policy = job.dest_path, job.on_conflict
    with job.open_source() as source, job.open_dest() as dest:
        carried = job.carried
        if job.flow.source_connection_id is not None:
            check_folder(dest, dest_path, job.dest_row.name)
        if policy is not OnConflict.overwrite and (again or job.tried_before):
            there = find_delivered(dest, dest_path, policy, carried)
            if there is not None:
                answer = {"summary": "already there with the same SHA-256; not written again"}
                return Delivered(dest.uri(there), answer)
        linked = _link_derived(job, dest, dest_path, policy)
        if linked is not None:
            # The derived file is in place already (a hard link, no copy). Unchanged since it was
            # hashed, its hash is the one of the bytes in place; else they are read back and
            # verified before the commit gives them the destination's name.
            with linked:
                if not _unchanged_since_hashed(linked.temp, carried):
                    _verify(_Hashing(linked), carried)
                with still_carrying(job):
                    linked.commit()
            return Delivered(dest.uri(linked.path or dest_path), linked.answer)
        with _open_carried(job, source) as raw, dest.open_write(dest_path, policy) as out:
            reader = _Hashing(raw)
            while chunk := reader.read(CHUNK_SIZE):
                out.write(chunk)
            _verify(reader, carried)
            # Raised here, TransferTaken aborts the write: a run that lost the file writes nothing.
            with still_carrying(job):
                out.commit()
        return Delivered(dest.uri(out.path or dest_path), out.answer)


@contextmanager
def still_carrying(job: Job) -> Iterator[None]:
    """The fence around a destination's commit (its rename, CompleteMultipartUpload, block list):
    TransferTaken unless `job`'s run still holds the transfer (running, by its run id).

    A run cut off from Prefect but still reaching the store is found dead by the dispatcher, which
    requeues its files for another run; this keeps the first from writing a file after that. On
    PostgreSQL the transfer's row stays locked until the block ends, so the requeue (one
    conditional UPDATE of the row, core/transfers.py) waits for a commit already under way instead
    of slipping between the check and the commit; the file is then requeued as written-but-not-
    recorded, which the next run finds at the destination (`find_delivered`). On SQLite, one
    machine, the check is a read: the run and a dispatcher that finds it dead share the machine."""
    engine = get_engine()
    if engine.dialect.name != "postgresql":
        # A prebuilt read of two columns, not the row through a session: a third of the CPU,
        # once for every file delivered.
        with engine.connect() as connection:
            held = connection.execute(_HOLDER, {"id": job.transfer_id}).first()
        if held is None or not _carried_by(held, job):
            with session_scope() as session:  # the reason names who holds it now
                raise TransferTaken(_taken_reason(job, session.get(Transfer, job.transfer_id)))
        yield
        return
    # The same read, locking the row (`SELECT … FOR UPDATE`): one statement in one transaction.
    with engine.begin() as connection:
        held = connection.execute(_HOLDER_LOCKED, {"id": job.transfer_id}).first()
        if held is None or not _carried_by(held, job):
            with Session(connection) as session:  # the reason, read on the connection holding the lock
                raise TransferTaken(_taken_reason(job, session.get(Transfer, job.transfer_id)))
        yield


_HOLDER = select(Transfer.state, Transfer.flow_run_id).where(Transfer.id == bindparam("id"))
_HOLDER_LOCKED = _HOLDER.with_for_update()


def _taken_reason(job: Job, transfer: Transfer | None) -> str:
    this = f"run {job.flow_run_id}" if job.flow_run_id else "this run"
    if transfer is None:
        return f"{job.receipt.name}: transfer {job.transfer_id} is gone; not written"
    holder = f"run {transfer.flow_run_id}" if transfer.flow_run_id else "the dispatcher"
    return (
        f"{job.receipt.name}: {this} no longer holds transfer {job.transfer_id} ({holder} has it, "
        f"{transfer.state}: this run was taken for dead); not written, so it is not written twice"
    )


def _verify(reader: _Hashing, carried: Carried) -> None:
    """Read the rest of `reader`; ChecksumMismatch unless all it gave is the carried file. Raised
    inside a write's `with`, it aborts the write: wrong bytes never become visible."""
    while reader.read(CHUNK_SIZE):
        pass
    if reader.sha.hexdigest() != carried.sha256 or reader.size != carried.size:
        raise ChecksumMismatch(f"{carried.name} changed since it was made or received; not delivered")


def _unchanged_since_hashed(linked: Path, carried: Carried) -> bool:
    """Whether the file linked in place is the very file that was hashed, as it was then (same
    inode, size and modification time: no write since). Its hash was taken from the bytes
    themselves, once they were all written (core/transforms/staging.py); reading them back would
    read the same pages of the same inode again and prove nothing more."""
    if carried.identity is None:
        return False
    try:
        now = FileIdentity.of(os.stat(linked))
    except OSError:
        return False
    return now == carried.identity and now.size == carried.size


def _link_derived(job: Job, dest: Endpoint, dest_path: str, policy: OnConflict) -> LinkedWriteStream | None:
    """A derived file bound for a folder on its own filesystem is put there by a hard link rather
    than copied (a derived file is private to tradelane and never changed once made; the kept
    file is not linked: it stays in the partner's mailbox). None: copy it."""
    if not job.derived or not isinstance(dest, FileEndpoint):
        return None
    try:
        return dest.open_linked(job.carried.path, dest_path, policy)
    except NotFound:
        raise ChecksumMismatch(f"the derived file {job.carried.name} is gone; not delivered") from None


def _open_carried(job: Job, source: Endpoint) -> BinaryIO:
    """The carried file, read: a derived file from staging, else the receipt's kept file."""
    if not job.derived:
        return source.open_read(job.source_path)
    try:
        return job.carried.open()
    except FileNotFoundError:
        raise ChecksumMismatch(f"the derived file {job.carried.name} is gone; not delivered") from None


def check_folder(dest: Endpoint, dest_path: str, endpoint_name: str) -> None:
    """A connection lands only into the folder its receiver chose: if that was removed, fail (not
    retried) so the receiver recreates it and replays, rather than write into a re-created one."""
    folder = posixpath.dirname(dest_path)
    if dest.exists_dir(folder) is False:
        raise FolderMissing(f"the receiving folder {folder!r} no longer exists in endpoint {endpoint_name!r}")


def find_delivered(dest: Endpoint, path: str, policy: OnConflict, receipt: Receipt | Carried) -> str | None:
    """The name among `path`, `name (2).ext`, … (up to the first free one) whose file holds exactly
    the carried bytes; None if there is none. Only files of the carried size are read."""
    names = conflict.candidates(path) if policy is OnConflict.rename else iter([path])
    for name in names:
        try:
            info = dest.stat(name)
        except NotFound:
            return None
        if info.size == receipt.size and _sha256_at(dest, name) == receipt.sha256:
            return name
    return None


def _sha256_at(dest: Endpoint, path: str) -> str:
    with dest.open_read(path) as stream:
        reader = _Hashing(stream)
        while reader.read(CHUNK_SIZE):
            pass
    return reader.sha.hexdigest()


@dataclass(frozen=True)
class Outcome:
    """How one transfer ended: delivered to `destination_uri`, or stopped by `error`."""

    job: Job
    error: BaseException | None = None
    destination_uri: str | None = None
    answer: dict[str, Any] | None = None

    @classmethod
    def delivered(cls, job: Job, delivered: Delivered) -> Outcome:
        return cls(job, destination_uri=delivered.uri, answer=delivered.answer)

    @property
    def state(self) -> TransferState:
        """What the transfer becomes. Recorded once the run's own retries are spent, so a
        Deferrable error (the destination cannot take files now) makes it wait, never fail."""
        if self.error is None:
            return TransferState.delivered
        if isinstance(self.error, ValidationError):
            return TransferState.rejected
        if isinstance(self.error, Deferrable):
            return TransferState.waiting
        return TransferState.failed


@dataclass(frozen=True)
class Recorded:
    """What `record` wrote for one outcome: its state, and for a waiting one when it is tried again."""

    state: TransferState
    next_attempt_at: datetime | None = None
    # The error recorded, when it is not the outcome's own (a waiting file whose connection was revoked).
    error: str | None = None
    # When the final state was written (the transfer's finished_at): the time its event says it
    # occurred, so a digest's window (Prefect's, by event time) and the store's agree.
    at: datetime | None = None


def record_outcomes(outcomes: list[Outcome]) -> list[TransferState]:
    """Write a batch's outcomes in one transaction (see `record`); their states."""
    return [recorded.state for recorded in record(outcomes)]


def waiting_error(error: BaseException) -> str:
    """A waiting transfer's error: what the destination said, as "destination unreachable: …"."""
    text = describe(error)
    return text if text.startswith("destination unreachable") else f"destination unreachable: {text}"


def record(outcomes: list[Outcome]) -> list[Recorded]:
    """Write a batch's outcomes in one transaction: final states, and waiting ones with their next
    attempt; tidy the mailbox once every flow delivered a file."""
    recorded: list[Recorded] = []
    with session_scope() as session:
        # Locked (in one order) and read afresh: recorded once, by the run that holds the transfer.
        rowlock.lock_all(session, Transfer, [outcome.job.transfer_id for outcome in outcomes])
        held = _read_batch(session, [outcome.job.transfer_id for outcome in outcomes])
        delivered: list[Job] = []
        for outcome in outcomes:
            transfer = session.get(Transfer, outcome.job.transfer_id)
            assert transfer is not None
            if not _carried_by(transfer, outcome.job):
                recorded.append(_as_it_is(transfer, outcome.job))
                continue
            if outcome.state is TransferState.waiting and _revoked(session, outcome.job):
                # Revoked while this run was on it: nothing will carry it later (revoke fails the
                # waiting files it finds; this one was running then).
                transfers.finish(session, transfer, TransferState.failed, error=REVOKED)
                transfer.error_kind = "revoked"
                recorded.append(Recorded(TransferState.failed, error=REVOKED, at=transfer.finished_at))
                continue
            if outcome.state is TransferState.waiting:
                assert outcome.error is not None
                when = transfers.wait(
                    session,
                    transfer,
                    error=scrub_known(waiting_error(outcome.error)),
                    error_kind=error_kind(outcome.error),
                    max_seconds=get_settings().wait_retry_max_seconds,
                )
                recorded.append(Recorded(TransferState.waiting, when))
                continue
            # Whatever an endpoint let through, no secret this process holds goes into the history.
            transfers.finish(
                session,
                transfer,
                outcome.state,
                error=None if outcome.error is None else scrub_known(describe(outcome.error)),
                destination_uri=outcome.destination_uri,
                answer=scrub_known(outcome.answer),
            )
            transfer.error_kind = None if outcome.error is None else error_kind(outcome.error)
            derived.discard(outcome.job.transfer_id)  # final: its derived files served their purpose
            if outcome.state is TransferState.delivered:
                delivered.append(outcome.job)
            recorded.append(Recorded(outcome.state, at=transfer.finished_at))
        _archive_sources_if_done(session, delivered)
        del held
    return recorded


def _read_batch(session: Session, transfer_ids: list[int]) -> list[Any]:
    """The batch's transfers (afresh), their receipts and data flows, read in two statements into
    the session, where `session.get` then finds them; the caller holds the list while it works (the
    session's identity map keeps only what something references)."""
    rows: list[Any] = []
    for transfer, receipt in session.exec(
        select(Transfer, Receipt)
        .join(Receipt, col(Receipt.id) == Transfer.receipt_id)
        .where(col(Transfer.id).in_(transfer_ids))
        .execution_options(populate_existing=True)
    ).all():
        rows += (transfer, receipt)
    flow_ids = {row.data_flow_id for row in rows if isinstance(row, Transfer)}
    rows += session.exec(select(DataFlow).where(col(DataFlow.id).in_(flow_ids))).all()
    return rows


REVOKED = "connection revoked before delivery"


class _Held(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def flow_run_id(self) -> str | None: ...


def _carried_by(transfer: _Held, job: Job) -> bool:
    """Whether the run that started `job` still carries the transfer: it is running, held by that
    run. Not when its outcome was recorded already (a record made twice) or when the dispatcher
    took it from a run it found dead and another run took it since."""
    return transfer.state == TransferState.running and transfer.flow_run_id == job.flow_run_id


def _as_it_is(transfer: Transfer, job: Job) -> Recorded:
    """What a record that changes nothing says: the transfer's state as another record left it."""
    state = TransferState(transfer.state)
    if transfer.flow_run_id == job.flow_run_id:
        return Recorded(state, transfer.next_attempt_at, transfer.error)
    elsewhere = f"run {transfer.flow_run_id}" if transfer.flow_run_id else "the dispatcher"
    note = f"not recorded by this run: the transfer was given to {elsewhere} meanwhile ({state.value})"
    return Recorded(state, transfer.next_attempt_at, note)


def _revoked(session: Session, job: Job) -> bool:
    """Whether the file's B2B connection (if its data flow carries one) was revoked."""
    if job.flow.source_connection_id is None:
        return False
    conn = session.get(Connection, job.flow.source_connection_id)
    return conn is not None and conn.state == ConnectionState.revoked


def error_kind(error: BaseException) -> str:
    """What kind of failure this is, in one word: what the sender of a B2B file is told about."""
    from core.endpoints.base import AuthError, NameTaken, PermissionDenied, TransientError

    kinds: list[tuple[type[BaseException], str]] = [
        (FolderMissing, "folder-missing"),
        (ValidationError, "rejected"),
        (ChecksumMismatch, "checksum"),
        (AuthError, "auth"),
        (PermissionDenied, "permission"),
        (NameTaken, "name-taken"),
        (TransientError, "unreachable"),
        (OSError, "unreachable"),
    ]
    for cls, kind in kinds:
        if isinstance(error, cls):
            return kind
    return "other"


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, (EndpointError, ValidationError)) else f"{type(error).__name__}: {text}"


def _archive_sources_if_done(session: Session, jobs: list[Job]) -> None:
    """A delivered upload leaves the partner's folder once every data flow that carries it delivered
    it: for each data flow, its latest transfer of the receipt (a replay supersedes the transfer it
    replays). The bytes stay in their receipt file for replays (`tradelane replay`); rejected or failed
    files stay where the partner put them, so an operator can see them. `jobs` were just recorded
    delivered; their receipts' transfers are read in one statement.
    """
    receipt_ids = {job.receipt.id for job in jobs if job.receipt.id is not None}
    if not receipt_ids:
        return
    rows = session.exec(
        select(Transfer.receipt_id, Transfer.data_flow_id, Transfer.id, Transfer.state).where(
            col(Transfer.receipt_id).in_(receipt_ids)
        )
    ).all()
    latest: dict[tuple[int, int], tuple[int, str]] = {}
    for receipt_id, flow_id, transfer_id, state in rows:
        assert transfer_id is not None
        key = (receipt_id, flow_id)
        if key not in latest or transfer_id > latest[key][0]:
            latest[key] = (transfer_id, state)
    done = TransferState.delivered
    still_open = {receipt_id for (receipt_id, _), (_, state) in latest.items() if state != done}
    for receipt_id in sorted(receipt_ids - still_open):
        receipt = session.get(Receipt, receipt_id)
        assert receipt is not None
        moved = receipt_files.hide(receipt)
        if moved is not None:
            receipt.storage_path = moved
            session.add(receipt)
