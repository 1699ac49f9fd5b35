"""Carrying one receipt through one data flow: read the source, check it, write the destination.

Prefect-free so the same steps can be tested without a server; tasks/ wraps each in a task.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
from dataclasses import dataclass
from datetime import UTC
from typing import Any, BinaryIO

from sqlmodel import Session, select

from core import transfers
from core.config import get_settings
from core.db import session_scope
from core.endpoints import store as endpoint_store
from core.endpoints.base import CHUNK_SIZE, Endpoint, EndpointError, InvalidPath, clean_path
from core.endpoints.file import FileEndpoint
from core.models import FINAL_STATES, DataFlow, Partner, Receipt, Transfer, TransferState
from core.models import Endpoint as EndpointRow
from core.redact import scrub_known
from core.validators import ValidationError, validate_stream

log = logging.getLogger(__name__)

# Delivered files' bytes, kept under the mailbox root for replays; partners never see it.
ARCHIVE_DIR = ".archive"


class ChecksumMismatch(EndpointError):
    """The source no longer holds the bytes that were received (replaced or damaged)."""


@dataclass(frozen=True)
class Job:
    """Everything one transfer needs, read once from the store (no secrets: rows are opened lazily)."""

    transfer_id: int
    receipt: Receipt
    flow: DataFlow
    partner_name: str
    dest_row: EndpointRow

    @property
    def source_path(self) -> str:
        return locate(self.receipt)

    def open_source(self) -> Endpoint:
        # Receipts point into the mailbox store: a partner's folder, or the archive once delivered.
        return FileEndpoint({"path": str(get_settings().mailbox_root)})

    def open_dest(self) -> Endpoint:
        return endpoint_store.open_row(self.dest_row)

    @property
    def dest_path(self) -> str:
        return render_dest_path(self.flow.dest_path, self.receipt, self.partner_name)


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
    return Job(transfer_id, receipt, flow, partner.name if partner else "remote", dest_row)


def locate(receipt: Receipt) -> str:
    """Where the receipt's bytes are, relative to the mailbox root.

    A delivered upload is moved to the archive inside the transaction that records the delivery;
    if the process is killed between the move and the commit, the store still names the old place
    while the bytes are in the archive. The run is then dispatched again and finds them there.
    """
    root = get_settings().mailbox_root
    if (root / receipt.storage_path).exists():
        return receipt.storage_path
    archived = archive_path(receipt)
    return archived if (root / archived).exists() else receipt.storage_path


def render_dest_path(template: str, receipt: Receipt, partner_name: str) -> str:
    """Expand {name} {stem} {suffix} {partner} {date} {time} {receipt} {sha256}; refuse escapes."""
    stem, suffix = posixpath.splitext(receipt.name)
    received = receipt.received_at.astimezone(UTC) if receipt.received_at.tzinfo else receipt.received_at
    try:
        rendered = template.format(
            name=receipt.name,
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
    started: list[int] = []
    with session_scope() as session:
        for transfer_id in transfer_ids:
            transfer = session.get(Transfer, transfer_id)
            if transfer is None or transfer.state in FINAL_STATES:
                continue
            transfers.mark_running(session, transfer)
            started.append(transfer_id)
        session.commit()  # running is recorded even if a job below cannot be loaded
        return [_job(session, transfer_id) for transfer_id in started]


def count_attempts(transfer_ids: list[int]) -> None:
    """One more try for each transfer, written before the try so a crash mid-push still counts it."""
    with session_scope() as session:
        for transfer_id in transfer_ids:
            transfer = session.get(Transfer, transfer_id)
            assert transfer is not None
            transfers.count_attempt(session, transfer)


class _Hashing:
    """Wraps a readable stream, hashing and counting what passes through."""

    def __init__(self, stream: BinaryIO) -> None:
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


def push(job: Job) -> Delivered:
    """Stream source → destination, committing only if the bytes match the receipt."""
    dest_path = job.dest_path
    with job.open_source() as source, job.open_dest() as dest:
        with source.open_read(job.source_path) as raw, dest.open_write(dest_path) as out:
            reader = _Hashing(raw)
            while chunk := reader.read(CHUNK_SIZE):
                out.write(chunk)
            if reader.sha.hexdigest() != job.receipt.sha256 or reader.size != job.receipt.size:
                # Raising inside the `with` aborts the write: wrong bytes never become visible.
                raise ChecksumMismatch(f"{job.source_path} changed since it was received; not delivered")
        return Delivered(dest.uri(dest_path), out.answer)


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
        if self.error is None:
            return TransferState.delivered
        if isinstance(self.error, ValidationError):
            return TransferState.rejected
        return TransferState.failed


def record_outcomes(outcomes: list[Outcome]) -> list[TransferState]:
    """Write a batch's final states in one transaction; tidy the mailbox once every flow delivered a file."""
    with session_scope() as session:
        for outcome in outcomes:
            transfer = session.get(Transfer, outcome.job.transfer_id)
            assert transfer is not None
            # Whatever an endpoint let through, no secret this process holds goes into the history.
            transfers.finish(
                session,
                transfer,
                outcome.state,
                error=None if outcome.error is None else scrub_known(describe(outcome.error)),
                destination_uri=outcome.destination_uri,
                answer=scrub_known(outcome.answer),
            )
            if outcome.state is TransferState.delivered:
                _archive_source_if_done(session, outcome.job)
    return [outcome.state for outcome in outcomes]


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, (EndpointError, ValidationError)) else f"{type(error).__name__}: {text}"


def _archive_source_if_done(session: Session, job: Job) -> None:
    """A delivered upload leaves the partner's folder for the archive once all its data flows delivered it.

    The bytes stay for replays (`tradelane replay`); rejected or failed files stay where the partner
    put them, so an operator can see them.
    """
    if get_settings().keep_delivered_uploads or job.receipt.storage_path.startswith(ARCHIVE_DIR):
        return
    states = session.exec(select(Transfer.state).where(Transfer.receipt_id == job.receipt.id)).all()
    if any(s != TransferState.delivered for s in states):
        return
    root = get_settings().mailbox_root
    current = root / job.receipt.storage_path
    try:
        info = current.stat()
        # The file was renamed into place before its receipt was written, so a later upload of the
        # same name has a later mtime: only this receipt's own bytes are moved.
        if info.st_size != job.receipt.size or info.st_mtime > job.receipt.received_at.timestamp():
            return
        archived = archive_path(job.receipt)
        (root / archived).parent.mkdir(parents=True, exist_ok=True)
        os.replace(current, root / archived)
    except OSError:
        log.warning("could not archive %s after delivery", current, exc_info=True)
        return
    receipt = session.get(Receipt, job.receipt.id)
    assert receipt is not None
    receipt.storage_path = archived
    session.add(receipt)


def archive_path(receipt: Receipt) -> str:
    day = receipt.received_at.astimezone(UTC).strftime("%Y-%m-%d")
    return f"{ARCHIVE_DIR}/{day}/{receipt.id}-{receipt.name}"
