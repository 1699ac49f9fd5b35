"""The ledger of resumable browser uploads (tus, api/web/tus.py): one `web_upload` row per upload.

An upload is bound to the login (partner or account user), not to the browser session, so it
resumes after a new login; its id (128 random bits, hex) is its URL, and another login's id is
answered as unknown (never "forbidden": existence elsewhere is not revealed). Its bytes are in the
login's staging folder (core/mailbox/staging.py), which stays the one truth about the offset; the
row says what the upload is (folder, name, length), who owns it and how it ended.

One open upload per login and file: starting a second one for the same name is refused while the
first was active in the last `BUSY_SECONDS` (two tabs uploading one file), else the old one is
superseded (its staged bytes discarded by the caller). Expiry = creation + the staging's retention
(24 h), when the staging sweep may delete the bytes. Rows are pruned by `web_sessions.prune`.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.errors import Conflict, Gone, NotFound
from core.login import LoginUser
from core.mailbox.staging import PARTIAL_RETENTION_SECONDS
from core.models import WebUpload, WebUploadState, utcnow

__all__ = [
    "BUSY_SECONDS",
    "RETENTION",
    "NotOpen",
    "cancel",
    "create",
    "finish",
    "get",
    "is_done",
    "record_patch",
]

# An open upload written to this recently is someone's live upload: a second one is refused.
BUSY_SECONDS = 60.0
RETENTION = timedelta(seconds=PARTIAL_RETENTION_SECONDS)


class NotOpen(Conflict):
    """The upload is no longer open: it was taken in (or cancelled) by another request or process."""


UNKNOWN = "no such upload: it was cancelled, finished long ago, or never began"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def create(
    session: Session, login: LoginUser, folder: str, name: str, length: int, now: datetime | None = None
) -> tuple[WebUpload, WebUpload | None]:
    """A new open upload of `folder/name`, and the open one it supersedes (whose staged bytes the
    caller discards), if any; `Conflict` while another is being written."""
    now = now or utcnow()
    kind, principal_id = login.key
    earlier = session.exec(
        select(WebUpload).where(
            WebUpload.kind == kind,
            WebUpload.principal_id == principal_id,
            WebUpload.folder == folder,
            WebUpload.name == name,
            WebUpload.state == WebUploadState.open,
        )
    ).first()
    if earlier is not None:
        if (now - _aware(earlier.updated_at)).total_seconds() < BUSY_SECONDS:
            started = _aware(earlier.created_at).strftime("%H:%M UTC")
            raise Conflict(
                f"{folder}/{name} is already being uploaded (started {started}); cancel it there or wait"
            )
        earlier.state = WebUploadState.superseded
        earlier.updated_at = now
        session.add(earlier)
        session.flush()  # the partial unique index allows one open row per name
    row = WebUpload(
        id=secrets.token_hex(16),
        kind=kind,
        principal_id=principal_id,
        account_id=login.account_id,
        folder=folder,
        name=name,
        length=length,
        created_at=now,
        updated_at=now,
        expires_at=now + RETENTION,
    )
    session.add(row)
    session.flush()
    return row, earlier


def get(session: Session, upload_id: str, login: LoginUser, now: datetime | None = None) -> WebUpload:
    """This login's upload `upload_id`, open or done; `NotFound` for another login's, an unknown,
    cancelled or superseded one; `Gone` for an open one past its expiry."""
    row = session.get(WebUpload, upload_id) if len(upload_id) == 32 else None
    if row is None or (row.kind, row.principal_id) != login.key:
        raise NotFound(UNKNOWN)
    if row.state in (WebUploadState.cancelled, WebUploadState.superseded):
        raise NotFound(UNKNOWN)
    if row.state == WebUploadState.open and (now or utcnow()) >= _aware(row.expires_at):
        raise Gone("this upload expired (24 h); start it again")
    return row


def record_patch(session: Session, upload_id: str, wrote: int, now: datetime | None = None) -> None:
    """A PATCH wrote `wrote` bytes (the row shows how many requests carried the file and how much)."""
    row = session.get(WebUpload, upload_id)
    if row is None:
        return
    row.received += wrote
    row.patches += 1
    row.updated_at = now or utcnow()
    session.add(row)


def finish(session: Session, upload_id: str, receipt_id: int | None, now: datetime | None = None) -> None:
    """The upload was taken in (its receipt): open -> done in one conditional UPDATE, run in the
    receipt's own transaction (intake's `also`), so the receipt and the row's `done` commit together
    or not at all. `NotOpen` when the row is no longer open (another request or process took the
    file in first, or it was cancelled): the caller's transaction, the second receipt, rolls back.
    On PostgreSQL a second writer waits for the first's commit and then finds the row done; SQLite
    has one writer at a time."""
    result = session.exec(
        update(WebUpload)
        .where(col(WebUpload.id) == upload_id, col(WebUpload.state) == WebUploadState.open)
        .values(state=WebUploadState.done, receipt_id=receipt_id, updated_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise NotOpen(f"upload {upload_id} is no longer open: it was taken in or cancelled meanwhile")


def is_done(session: Session, upload_id: str) -> bool:
    """Whether the upload was taken in (read afresh, not from the session's identity map)."""
    state = session.exec(select(WebUpload.state).where(col(WebUpload.id) == upload_id)).first()
    return state == WebUploadState.done


def cancel(session: Session, upload_id: str, now: datetime | None = None) -> None:
    """The login gave the upload up (its staged bytes are discarded by the caller). Only an open
    upload: one another process took in meanwhile stays done (a 404 would make tus-js-client start
    the file afresh)."""
    session.exec(
        update(WebUpload)
        .where(col(WebUpload.id) == upload_id, col(WebUpload.state) == WebUploadState.open)
        .values(state=WebUploadState.cancelled, updated_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
