"""What each side of a connection sees of the files sent through it (`transfers --connection N`).

Built from the connection's receipts and each one's newest transfer. The sender gets a fixed
projection: file, size, SHA-256, times, state, attempts, the receipt, and an outcome phrase chosen
by `transfer.error_kind` — never the destination URI, the destination's answer, the raw error text,
the endpoint or the folder. The receiver also gets those (scrubbed of secrets).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from core.b2b import connections
from core.b2b.caller import Caller
from core.endpoints import rows as endpoint_rows
from core.models import Connection, ConnectionState, Receipt, Transfer
from core.models import Endpoint as EndpointRow

# The sender's words for how a file fared, by error kind (core/delivery.py `error_kind`).
OUTCOMES = {
    None: "the receiver's storage refused the file",
    "unreachable": "the receiver's storage could not be reached",
    "auth": "the receiver's storage refused its credentials; the receiver was told",
    "permission": "the receiver's storage refused the write; the receiver was told",
    "folder-missing": "the receiving folder is missing; the receiver was told",
    "name-taken": "a file of that name was already there; the receiver was told",
    "rejected": "the receiver's checks rejected the file",
    "checksum": "the file changed before delivery; send it again",
    "revoked": "revoked before delivery",
    "other": "the delivery failed; the receiver was told",
}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def outcome(state: str, error_kind: str | None) -> str:
    if state == "delivered":
        return "delivered"
    if state in ("pending", "running"):
        return "on its way"
    if state == "waiting":
        return "waiting: the receiver's side cannot take it now; the file is kept and sent again later"
    if state == "held":
        return "held until the receiver accepts"
    if state == "not sent":
        return "not sent: the connection ended before it was accepted"
    phrase = OUTCOMES.get(error_kind, OUTCOMES["other"])
    return phrase if state == "failed" or error_kind else f"{state}: {phrase}"


def connection_history(
    session: Session, caller: Caller, ref: str | int, *, limit: int = 50, state: str | None = None
) -> list[dict[str, Any]]:
    conn = connections.require(session, caller, ref)
    receiver = connections.side_of(conn, caller.account_id) == "receive"
    receipts = session.exec(
        select(Receipt).where(Receipt.connection_id == conn.id).order_by(col(Receipt.id).desc())
    ).all()
    scrubber = endpoint_rows.scrubber(session, caller) if receiver else None
    rows: list[dict[str, Any]] = []
    for receipt in receipts:
        transfer = session.exec(
            select(Transfer).where(Transfer.receipt_id == receipt.id).order_by(col(Transfer.id).desc())
        ).first()
        row_state = _state(conn, receipt, transfer)
        if state and row_state != state:
            continue
        item: dict[str, Any] = {
            "id": transfer.id if transfer else None,
            "receipt_id": receipt.id,
            "file": receipt.name,
            "size": receipt.size,
            "sha256": receipt.sha256,
            "sent_at": _iso(receipt.received_at),
            "finished_at": _iso(transfer.finished_at) if transfer else None,
            "attempts": transfer.attempts if transfer else 0,
            "state": row_state,
            "next_attempt_at": _iso(transfer.next_attempt_at) if transfer else None,
            "receipt": {
                "sha256": receipt.sha256,
                "size": receipt.size,
                "received_at": _iso(receipt.received_at),
            },
        }
        if receiver:
            assert scrubber is not None
            dest = session.get(EndpointRow, conn.dest_endpoint_id) if conn.dest_endpoint_id else None
            item.update(
                flow=f"b2b:{conn.id}",
                dest=dest.name if dest else None,
                destination_uri=transfer.destination_uri if transfer else None,
                destination_answer=scrubber.data(transfer.destination_answer) if transfer else None,
                error=scrubber.text(transfer.error) if transfer and transfer.error else None,
                flow_run_id=transfer.flow_run_id if transfer else None,
            )
        else:
            item["outcome"] = outcome(row_state, transfer.error_kind if transfer else None)
            signed = _peer_receipt(transfer)
            if signed is not None:  # across instances: the receiver's own signed word, for the sender
                item["outcome"] = "delivered (signed receipt)"
                item["signed_receipt"] = signed
        rows.append(item)
        if len(rows) >= limit:
            break
    return rows


def _peer_receipt(transfer: Transfer | None) -> dict[str, str] | None:
    """The signed receipt another instance answered a push with (core/endpoints/peer.py), if any:
    the three strings only (`receipts.SignedReceipt`), which name nothing of the receiver's storage."""
    if transfer is None or transfer.state != "delivered" or not transfer.destination_answer:
        return None
    if not (transfer.destination_uri or "").startswith("tradelane-peer://"):
        return None
    answer = transfer.destination_answer
    fields = ("receipt", "signature", "key_id")
    if not all(isinstance(answer.get(field), str) for field in fields):
        return None
    return {field: str(answer[field]) for field in fields}


def _state(conn: Connection, receipt: Receipt, transfer: Transfer | None) -> str:
    if transfer is not None:
        return transfer.state
    if receipt.held and conn.state == ConnectionState.pending:
        return "held"
    return "not sent"
