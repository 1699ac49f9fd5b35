"""Read what a file's events say (`FileFacts`) from the store: at intake, for a run's job, for a transfer."""

from __future__ import annotations

from sqlmodel import select

from core.db import session_scope
from core.delivery import Job
from core.models import DataFlow, Partner, Receipt, Transfer
from core.notify.events import FileFacts
from core.tenancy import account_name


def of_receipt(receipt: Receipt) -> FileFacts:
    """A file just taken in, with every data flow that will carry it."""
    return of_receipts([receipt])[0]


def of_receipts(receipts: list[Receipt]) -> list[FileFacts]:
    """Files just taken in, each with every data flow that will carry it: two small queries for all."""
    ids = [receipt.id for receipt in receipts if receipt.id is not None]
    assert len(ids) == len(receipts)
    partner_ids = {receipt.partner_id for receipt in receipts if receipt.partner_id is not None}
    flows: dict[int, list[tuple[int, str]]] = {receipt_id: [] for receipt_id in ids}
    with session_scope() as session:
        rows = session.exec(
            select(Transfer.receipt_id, DataFlow.id, DataFlow.name)
            .join(DataFlow, Transfer.data_flow_id == DataFlow.id)  # type: ignore[arg-type]
            .where(Transfer.receipt_id.in_(ids))  # type: ignore[attr-defined]
            .order_by(Transfer.id)  # type: ignore[arg-type]
        ).all()
        partners = dict(
            session.exec(
                select(Partner.id, Partner.name).where(Partner.id.in_(partner_ids))  # type: ignore[union-attr]
            ).all()
            if partner_ids
            else []
        )
    for receipt_id, flow_id, name in rows:
        if flow_id is not None:
            flows[receipt_id].append((flow_id, name))
    return [
        FileFacts(
            receipt_id=receipt.id,
            name=receipt.name,
            size=receipt.size,
            sha256=receipt.sha256,
            account_id=receipt.account_id,
            account=account_name(receipt.account_id),
            partner_id=receipt.partner_id,
            partner=partners.get(receipt.partner_id) if receipt.partner_id else None,
            protocol=receipt.protocol,
            connection_id=receipt.connection_id,
            flows=tuple(flows[receipt.id]),
        )
        for receipt in receipts
        if receipt.id is not None
    ]


def of_job(job: Job, flow_run_id: str | None = None) -> FileFacts:
    """One transfer carried by a run (no query beyond the cached account name)."""
    receipt, flow = job.receipt, job.flow
    assert receipt.id is not None and flow.id is not None
    return FileFacts(
        receipt_id=receipt.id,
        name=receipt.name,
        size=receipt.size,
        sha256=receipt.sha256,
        account_id=flow.account_id,
        account=account_name(flow.account_id),
        partner_id=receipt.partner_id,
        partner=job.partner_name if receipt.partner_id else None,
        protocol=receipt.protocol,
        connection_id=receipt.connection_id or flow.source_connection_id,
        flows=((flow.id, flow.name),),
        transfer_id=job.transfer_id,
        flow_run_id=flow_run_id or job.flow_run_id,
        recipient_id=job.recipient_id,
        recipient=job.dest_row.config.get("partner") if job.recipient_id is not None else None,
    )


def of_transfer(transfer_id: int) -> FileFacts | None:
    """A transfer by id (a replay), or None if it is gone."""
    from core import delivery

    try:
        return of_job(delivery.load(transfer_id))
    except LookupError:
        return None


def first_carries_of_replays(transfer_ids: list[int]) -> dict[int, int]:
    """Of these transfers, the replays not tried yet: {transfer id: the transfer it replays}."""
    with session_scope() as session:
        rows = session.exec(
            select(Transfer.id, Transfer.replay_of).where(
                Transfer.id.in_(transfer_ids),  # type: ignore[union-attr]
                Transfer.replay_of.is_not(None),  # type: ignore[union-attr]
                Transfer.attempts == 0,
            )
        ).all()
    return {transfer_id: replay_of for transfer_id, replay_of in rows if transfer_id and replay_of}
