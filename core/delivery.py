"""Carrying one receipt through one data flow: read the source, check it, write the destination.

Prefect-free so the same steps can be tested without a server; tasks/ wraps each in a task.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from sqlmodel import Session, select

from core import transfers
from core.config import get_settings
from core.db import session_scope
from core.endpoints import store as endpoint_store
from core.endpoints.base import CHUNK_SIZE, Endpoint, EndpointError, InvalidPath, clean_path
from core.endpoints.mailbox import MailboxEndpoint
from core.models import FINAL_STATES, DataFlow, Partner, Receipt, Transfer, TransferState
from core.models import Endpoint as EndpointRow
from core.validators import ValidationError, validate_stream

log = logging.getLogger(__name__)


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
        return f"{self.receipt.folder}/{self.receipt.name}"

    def open_source(self) -> Endpoint:
        account, partner, _ = self.receipt.storage_path.split("/", 2)
        return MailboxEndpoint({"account": account, "partner": partner})

    def open_dest(self) -> Endpoint:
        return endpoint_store.open_row(self.dest_row)

    @property
    def dest_path(self) -> str:
        return render_dest_path(self.flow.dest_path, self.receipt, self.partner_name)


def load(transfer_id: int) -> Job:
    with session_scope() as session:
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


def mark_running(transfer_id: int) -> bool:
    """Mark the transfer running; False if it is already final (a batch run again after a crash)."""
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None or transfer.state in FINAL_STATES:
            return False
        transfers.mark_running(session, transfer)
        return True


def count_attempt(transfer_id: int) -> None:
    with session_scope() as session:
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


def push(job: Job) -> str:
    """Stream source → destination, committing only if the bytes match the receipt; returns the URI."""
    dest_path = job.dest_path
    with job.open_source() as source, job.open_dest() as dest:
        with source.open_read(job.source_path) as raw, dest.open_write(dest_path) as out:
            reader = _Hashing(raw)
            while chunk := reader.read(CHUNK_SIZE):
                out.write(chunk)
            if reader.sha.hexdigest() != job.receipt.sha256 or reader.size != job.receipt.size:
                # Raising inside the `with` aborts the write: wrong bytes never become visible.
                raise ChecksumMismatch(f"{job.source_path} changed since it was received; not delivered")
        return dest.uri(dest_path)


def record_outcome(
    job: Job, error: BaseException | None, destination_uri: str | None = None
) -> TransferState:
    """Write the transfer's final state; tidy the mailbox once every flow delivered the file."""
    if error is None:
        state = TransferState.delivered
    elif isinstance(error, ValidationError):
        state = TransferState.rejected
    else:
        state = TransferState.failed
    with session_scope() as session:
        transfer = session.get(Transfer, job.transfer_id)
        assert transfer is not None
        transfers.finish(
            session,
            transfer,
            state,
            error=None if error is None else describe(error),
            destination_uri=destination_uri,
        )
        if state is TransferState.delivered:
            _remove_source_if_done(session, job)
    return state


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, (EndpointError, ValidationError)) else f"{type(error).__name__}: {text}"


def _remove_source_if_done(session: Session, job: Job) -> None:
    """A delivered upload leaves the partner's upload/ once all its data flows delivered it.

    Rejected or failed files stay, so an operator can see them and replay.
    """
    if get_settings().keep_delivered_uploads:
        return
    states = session.exec(select(Transfer.state).where(Transfer.receipt_id == job.receipt.id)).all()
    if any(s != TransferState.delivered for s in states):
        return
    with job.open_source() as source:
        try:
            info = source.stat(job.source_path)
            # The file was renamed into place before its receipt was written, so a later upload of the
            # same name has a later mtime: only this receipt's file is removed.
            if info.size == job.receipt.size and _utc(info.modified) <= _utc(job.receipt.received_at):
                source.delete(job.source_path)
        except EndpointError:
            log.warning("could not tidy %s after delivery", job.source_path, exc_info=True)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
