"""The AS2 message history, newest first, linked to the receipts and transfers it produced."""

from __future__ import annotations

from sqlmodel import Session, col, select

from core.db import home_account_id
from core.models import As2Message, Transfer


def recent(
    session: Session,
    *,
    limit: int = 50,
    direction: str | None = None,
    partner: str | None = None,
    status: str | None = None,
) -> list[As2Message]:
    query = select(As2Message).where(As2Message.account_id == home_account_id(session))
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
