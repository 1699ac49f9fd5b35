"""A login's recent uploads and how each fared, in the three words a partner is shown.

Every door (REST, SFTP, FTP, the portal) takes files in through `core.intake`, so a login's
receipts are its uploads. Per receipt, the latest transfer of each data flow counts (a replay
supersedes the transfer it replays):

* **rejected** if any is rejected, with that transfer's error exactly as `tradelane transfers`
  shows it (`--json`'s `error`: scrubbed of the account's endpoint secrets), so a partner can fix
  the file and send it again;
* **delivered** if there is one at least and all are delivered;
* **received** otherwise: pending, running, waiting, failed, or no data flow took it. A failed
  delivery is the operator's to fix, and its error may name the operator's infrastructure: it is
  never shown to a partner.

An account user's uploads are the files it put into B2B outboxes; their words come from the
sender's projection of a connection (`core.b2b.history.outcome`), never the receiver's error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.b2b.history import outcome
from core.endpoints import rows as endpoint_rows
from core.errors import Forbidden
from core.models import Receipt, Transfer, TransferState
from core.tenancy import Scope

__all__ = ["UploadState", "UploadStatus", "recent_uploads"]

UploadState = Literal["received", "delivered", "rejected"]


@dataclass(frozen=True)
class UploadStatus:
    receipt_id: int
    name: str
    folder: str
    size: int
    received_at: datetime
    protocol: str
    state: UploadState
    message: str | None  # why it was rejected; None otherwise


def recent_uploads(session: Session, scope: Scope, *, limit: int = 20) -> list[UploadStatus]:
    """The scope's login's newest uploads first, each with its state (a partner's or a user's)."""
    if scope.partner_id is not None:
        mine = col(Receipt.partner_id) == scope.partner_id
    elif scope.user_id is not None:
        mine = col(Receipt.user_id) == scope.user_id
    else:
        raise Forbidden("only a partner or an account user has uploads of its own")
    receipts = list(
        session.exec(
            select(Receipt)
            .where(Receipt.account_id == scope.account_id, mine)
            .order_by(col(Receipt.id).desc())
            .limit(limit)
        )
    )
    latest = _latest_transfers(session, [r.id for r in receipts if r.id is not None])
    scrubber = endpoint_rows.scrubber(session, scope) if scope.partner_id is not None else None
    found = []
    for receipt in receipts:
        assert receipt.id is not None
        carried = latest.get(receipt.id, [])
        state, message = _state(carried) if scrubber is not None else _sender_state(receipt, carried)
        if message is not None and scrubber is not None:
            message = scrubber.text(message)
        found.append(
            UploadStatus(
                receipt_id=receipt.id,
                name=receipt.name,
                folder=receipt.folder,
                size=receipt.size,
                received_at=receipt.received_at,
                protocol=receipt.protocol,
                state=state,
                message=message,
            )
        )
    return found


def _latest_transfers(session: Session, receipt_ids: list[int]) -> dict[int, list[Transfer]]:
    """Per receipt, the newest transfer of each data flow."""
    if not receipt_ids:
        return {}
    newest = (
        select(func.max(Transfer.id))
        .where(col(Transfer.receipt_id).in_(receipt_ids))
        .group_by(col(Transfer.receipt_id), col(Transfer.data_flow_id))
    )
    rows = session.exec(select(Transfer).where(col(Transfer.id).in_(newest)).order_by(col(Transfer.id)))
    latest: dict[int, list[Transfer]] = {}
    for transfer in rows:
        latest.setdefault(transfer.receipt_id, []).append(transfer)
    return latest


def _state(carried: list[Transfer]) -> tuple[UploadState, str | None]:
    for transfer in carried:
        if transfer.state == TransferState.rejected:
            return "rejected", transfer.error
    if carried and all(t.state == TransferState.delivered for t in carried):
        return "delivered", None
    return "received", None


def _sender_state(receipt: Receipt, carried: list[Transfer]) -> tuple[UploadState, str | None]:
    """A file sent through an outbox, in the sender's words (the receiver's error never shown)."""
    for transfer in carried:
        if transfer.state == TransferState.rejected:
            return "rejected", outcome(transfer.state, transfer.error_kind)
    if carried and all(t.state == TransferState.delivered for t in carried):
        return "delivered", None
    return "received", None
