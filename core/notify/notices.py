"""What a notification is about, read from the store (the truth; events only say when to look).

`Item` is one file's news: what happened, the file, partner, data flow, the error in words, and
what to do next (the replay command, the Prefect run, the console page). `Notice` is one message:
the items of one rule's firing, one file or a digest's window of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from core.links import console_run_url, prefect_run_url
from core.models import DataFlow, NotifyRule, Partner, Receipt, Transfer
from core.redact import scrub_known
from core.tenancy import account_name

# The transfer state each rule's `on` names (received is the receipt itself).
TRANSFER_STATES = {"failed": "failed", "rejected": "rejected", "delivered": "delivered"}
WHATS = ("failed", "rejected", "received", "delivered")
# A digest lists at most this many files by name, then says how many more.
DIGEST_LISTED = 1000


@dataclass(frozen=True)
class Item:
    what: str
    file: str
    size: int
    sha256: str
    partner: str | None
    flow: str | None
    transfer_id: int | None
    receipt_id: int
    error: str | None = None
    destination: str | None = None
    run_url: str | None = None
    console_url: str | None = None
    at: datetime | None = None

    @property
    def next_step(self) -> str | None:
        """What to do next, in words."""
        if self.what == "failed" and self.transfer_id is not None:
            return f"fix the cause, then carry it again: tradelane replay {self.transfer_id}"
        if self.what == "rejected":
            return "the file's content was refused: the partner should correct it and send it again"
        return None


@dataclass(frozen=True)
class Notice:
    what: str
    account: str
    items: list[Item]
    total: int  # items found (a digest lists at most DIGEST_LISTED)
    digest_seconds: int | None = None
    filters: dict[str, str] = field(default_factory=dict)


def _item(
    what: str, transfer: Transfer | None, receipt: Receipt, flow: DataFlow | None, partner: str | None
) -> Item:
    run = transfer.flow_run_id if transfer is not None else None
    return Item(
        what=what,
        file=receipt.name,
        size=receipt.size,
        sha256=receipt.sha256,
        partner=partner,
        flow=flow.name if flow else None,
        transfer_id=transfer.id if transfer else None,
        receipt_id=receipt.id or 0,
        error=scrub_known(transfer.error) if transfer is not None and transfer.error else None,
        destination=scrub_known(transfer.destination_uri) if transfer is not None else None,
        run_url=prefect_run_url(run) if run else None,
        console_url=console_run_url(run) if run else None,
        at=(transfer.finished_at or transfer.updated_at) if transfer is not None else receipt.received_at,
    )


def matching(session: Session, rule: NotifyRule, since: datetime, until: datetime) -> tuple[list[Item], int]:
    """Every file the rule's filter matches that happened in [since, until]: its items (at most
    DIGEST_LISTED) and how many there were."""
    partner_row = aliased(Partner)
    if rule.on == "received":
        query = (
            select(Receipt, partner_row.name)
            .join(partner_row, col(Receipt.partner_id) == partner_row.id, isouter=True)
            .where(
                Receipt.account_id == rule.account_id,
                Receipt.received_at >= since,
                Receipt.received_at <= until,
            )
        )
        if rule.partner_id is not None:
            query = query.where(Receipt.partner_id == rule.partner_id)
        if rule.data_flow_id is not None:
            query = query.where(
                col(Receipt.id).in_(
                    select(Transfer.receipt_id).where(Transfer.data_flow_id == rule.data_flow_id)
                )
            )
        rows = session.exec(query.order_by(col(Receipt.id))).all()
        return [_item("received", None, receipt, None, name) for receipt, name in rows[:DIGEST_LISTED]], len(
            rows
        )
    query2 = (
        select(Transfer, Receipt, DataFlow, partner_row.name)
        .join(Receipt, col(Transfer.receipt_id) == Receipt.id)
        .join(DataFlow, col(Transfer.data_flow_id) == DataFlow.id)
        .join(partner_row, col(Receipt.partner_id) == partner_row.id, isouter=True)
        .where(
            Transfer.account_id == rule.account_id,
            Transfer.state == TRANSFER_STATES[rule.on],
            col(Transfer.finished_at) >= since,
            col(Transfer.finished_at) <= until,
        )
    )
    if rule.partner_id is not None:
        query2 = query2.where(Receipt.partner_id == rule.partner_id)
    if rule.data_flow_id is not None:
        query2 = query2.where(Transfer.data_flow_id == rule.data_flow_id)
    found = session.exec(query2.order_by(col(Transfer.id))).all()
    items = [_item(rule.on, t, r, f, name) for t, r, f, name in found[:DIGEST_LISTED]]
    return items, len(found)


def one(session: Session, rule: NotifyRule, receipt_id: int | None, transfer_id: int | None) -> Item | None:
    """The one file an event named, if it still matches the rule (None: nothing to say)."""
    if transfer_id is not None:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None or transfer.account_id != rule.account_id:
            return None
        receipt = session.get(Receipt, transfer.receipt_id)
        flow = session.get(DataFlow, transfer.data_flow_id)
    elif receipt_id is not None:
        transfer, flow = None, None
        receipt = session.get(Receipt, receipt_id)
    else:
        return None
    if receipt is None or (receipt.account_id != rule.account_id and transfer is None):
        return None
    partner = session.get(Partner, receipt.partner_id) if receipt.partner_id else None
    return _item(rule.on, transfer, receipt, flow, partner.name if partner else None)


def filters_of(session: Session, rule: NotifyRule) -> dict[str, str]:
    out: dict[str, str] = {}
    if rule.partner_id is not None and (partner := session.get(Partner, rule.partner_id)) is not None:
        out["partner"] = partner.name
    if rule.data_flow_id is not None and (flow := session.get(DataFlow, rule.data_flow_id)) is not None:
        out["flow"] = flow.name
    return out


def notice(session: Session, rule: NotifyRule, items: list[Item], total: int) -> Notice:
    return Notice(
        what=rule.on,
        account=account_name(rule.account_id),
        items=items,
        total=total,
        digest_seconds=rule.digest_seconds,
        filters=filters_of(session, rule),
    )
