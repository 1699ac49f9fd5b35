"""The AS2 message history, newest first, linked to the receipts and transfers it produced."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from core import transfers
from core.db import session_scope
from core.models import As2Message, Transfer, TransferState, utcnow
from core.tenancy import Scope


def recent(
    session: Session,
    scope: Scope,
    *,
    limit: int = 50,
    direction: str | None = None,
    partner: str | None = None,
    status: str | None = None,
) -> list[As2Message]:
    query = select(As2Message).where(As2Message.account_id == scope.account_id)
    if direction:
        query = query.where(As2Message.direction == direction)
    if partner:
        query = query.where(As2Message.partner_as2_id == partner)
    if status:
        query = query.where(As2Message.status == status)
    rows = list(session.exec(query.order_by(col(As2Message.id).desc()).limit(limit)))
    for row in rows:
        if row.direction == "out" and row.transfer_id is None and row.destination_uri:
            # The transfer learns the message's URI only when the push returns; link it on sight.
            transfer_id = session.exec(
                select(Transfer.id).where(Transfer.destination_uri == row.destination_uri)
            ).first()
            if transfer_id is not None:
                row.transfer_id = transfer_id
                session.add(row)
    return rows


def fail_transfer(session: Session, row: As2Message) -> None:
    """Make a failure that comes after delivery (no or negative async MDN) show on the transfer."""
    if not row.destination_uri:
        return
    transfer = session.exec(
        select(Transfer).where(
            Transfer.destination_uri == row.destination_uri, Transfer.state == TransferState.delivered
        )
    ).first()
    if transfer is None:
        return
    row.transfer_id = transfer.id
    session.add(row)
    transfers.finish(session, transfer, TransferState.failed, error=f"AS2 {row.message_id}: {row.error}")


def due(*conditions: Any, limit: int = 100) -> list[int]:
    """Ids of messages matching `conditions` whose next attempt is due, the longest waiting first
    (the async-MDN resends and the MDNs we owe both read their work this way)."""
    with session_scope() as session:
        query = (
            select(As2Message.id)
            .where(*conditions, col(As2Message.next_attempt_at) <= utcnow())
            .order_by(col(As2Message.next_attempt_at))
            .limit(limit)
        )
        return [row_id for row_id in session.exec(query) if row_id is not None]


def claim(session: Session, row: As2Message, lease_seconds: float, *conditions: Any) -> bool:
    """Take a due row (read by `due`) for this process, for `lease_seconds`: its next attempt
    moves past the lease, in one conditional UPDATE on the attempt time that was read being due
    (and `conditions`), so of several API processes running the AS2 worker exactly one does the
    work; the others find the row taken (no longer due) or changed. Should the taker die, the
    row is due again once the lease is over."""
    now = utcnow()
    result = session.exec(
        update(As2Message)
        .where(
            col(As2Message.id) == row.id,
            col(As2Message.next_attempt_at) == row.next_attempt_at,
            col(As2Message.next_attempt_at) <= now,
            *conditions,
        )
        .values(next_attempt_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)
