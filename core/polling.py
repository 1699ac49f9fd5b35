"""Polling sources: take each new file from a remote endpoint once, through the one intake.

A data flow whose source is an endpoint (s3, azure, sftp, ftp, email, http, file) is polled on its
schedule. Each file that matches the pattern and was not taken before (remembered by path + size +
mtime/etag) is streamed into the intake — a receipt and a pending transfer of this data flow, like
any upload — and then deleted, moved to an archive path, or left in place, as the flow says.
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass
from fnmatch import fnmatchcase

from sqlmodel import Session, select

from core import intake
from core.db import session_scope
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import CHUNK_SIZE, Endpoint, FileInfo, InvalidPath, clean_path, copy_stream
from core.models import DataFlow, PulledFile, Receipt
from core.models import Endpoint as EndpointRow

# Polled files are kept under a box of this name per data flow; partner names may not start with "_".
SOURCE_BOX_PREFIX = "_poll-"
AFTER_PULL_CHOICES = ("keep", "delete", "archive:PATH")


class PollingError(ValueError):
    """A polling setting that cannot work."""


def check_after_pull(value: str) -> str:
    if value in ("keep", "delete"):
        return value
    if value.startswith("archive:") and value.removeprefix("archive:").strip("/"):
        try:
            clean_path(value.removeprefix("archive:").strip("/"))
        except InvalidPath as exc:
            raise PollingError(f"--after-pull {value!r}: {exc}") from exc
        return value
    raise PollingError(f"--after-pull must be one of {', '.join(AFTER_PULL_CHOICES)}, not {value!r}")


@dataclass(frozen=True)
class SourceSender:
    """The intake's sender for a polled file: the data flow's own box, not a partner."""

    partner_id: int | None
    name: str
    account_id: int
    max_file_bytes: int | None = None


@dataclass(frozen=True)
class Source:
    flow: DataFlow
    row: EndpointRow

    def open(self) -> Endpoint:
        return endpoint_rows.open_row(self.row)


def load(data_flow_id: int) -> Source:
    with session_scope() as session:
        flow = session.get(DataFlow, data_flow_id)
        if flow is None or flow.source_endpoint_id is None:
            raise LookupError(f"data flow {data_flow_id} does not poll an endpoint")
        row = session.get(EndpointRow, flow.source_endpoint_id)
        if row is None:
            raise LookupError(f"data flow {flow.name!r} lost its source endpoint")
        return Source(flow, row)


def fingerprint(info: FileInfo) -> str:
    return f"{info.size}:{info.etag or info.modified.isoformat()}"


def new_files(source: Source, limit: int = 1000) -> list[FileInfo]:
    """Files in the source folder matching the pattern and not taken before, oldest name first."""
    if source.flow.removed_at is not None or source.row.removed_at is not None:
        return []  # its Prefect schedule may outlive a removed flow: take nothing more
    with source.open() as endpoint:
        candidates = [
            info
            for info in endpoint.list(source.flow.source_folder)
            if fnmatchcase(posixpath.basename(info.path), source.flow.pattern)
        ]
    if not candidates:
        return []
    with session_scope() as session:
        taken = set(
            session.exec(
                select(PulledFile.path, PulledFile.fingerprint).where(
                    PulledFile.data_flow_id == source.flow.id
                )
            ).all()
        )
    return [info for info in candidates if (info.path, fingerprint(info)) not in taken][:limit]


def pull(source: Source, info: FileInfo) -> Receipt:
    """Stream one file into the intake; the receipt and the 'taken' mark commit together."""
    flow = source.flow
    assert flow.id is not None
    sender = SourceSender(None, f"{SOURCE_BOX_PREFIX}{flow.name}", flow.account_id)
    name = posixpath.basename(info.path)
    # A box folder per file: two sources' files of the same name never overwrite each other.
    folder = f"inbox/{uuid.uuid4().hex[:12]}"

    def remember(session: Session, receipt: Receipt) -> None:
        assert flow.id is not None
        session.add(
            PulledFile(
                data_flow_id=flow.id, path=info.path, fingerprint=fingerprint(info), receipt_id=receipt.id
            )
        )

    with source.open() as endpoint, endpoint.open_read(info.path) as stream:
        upload = intake.begin(sender, folder, name, protocol=f"poll:{source.row.type}")
        try:
            while chunk := stream.read(CHUNK_SIZE):
                upload.write(chunk)
        except BaseException:
            upload.abort()
            raise
        return upload.commit(data_flow_ids=[flow.id], also=remember)


def after_pull(source: Source, info: FileInfo) -> str:
    """Apply the flow's after-pull action at the source; returns what was done."""
    action = source.flow.after_pull
    if action == "keep":
        return "kept (remembered)"
    with source.open() as endpoint:
        if action == "delete":
            endpoint.delete(info.path)
            return "deleted at source"
        target = f"{action.removeprefix('archive:').strip('/')}/{posixpath.basename(info.path)}"
        # No protocol-neutral rename: copy, then delete (a crash between leaves a copy, never a loss).
        with endpoint.open_read(info.path) as src, endpoint.open_write(target) as dst:
            copy_stream(src, dst)
        endpoint.delete(info.path)
        return f"moved to {target}"
