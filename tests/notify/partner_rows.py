"""Rows for partner-notice tests (in-process, a throwaway home): partners with contacts, data
flows into their mailboxes, and receipts carried by them, written straight into the store so a
test can give them names and errors no door would take."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import select

from core.db import session_scope
from core.models import DataFlow, Partner, Receipt, Transfer, TransferState
from tests.isolation import run_cli

PASSWORD = "Partner_rows_P@ssw0rd!"


def partner(name: str, *options: str, account: str = "home") -> int:
    run_cli("partner", "add", name, "--password", PASSWORD, "--account", account)
    if options:
        run_cli("partner", "set", name, *options, "--account", account)
    with session_scope() as session:
        return session.exec(select(Partner.id).where(Partner.name == name)).one() or 0


def flow(name: str, source: str, dest: str, account: str = "home") -> int:
    run_cli("flow", "add", name, "--source", f"mailbox:{source}", "--dest", dest, "--account", account)
    with session_scope() as session:
        return session.exec(select(DataFlow.id).where(DataFlow.name == name)).one() or 0


def carried(
    flow_id: int,
    file: str,
    state: TransferState,
    at: datetime,
    *,
    error: str | None = None,
    destination: str | None = None,
) -> int:
    """A receipt of the flow's source partner, carried by the flow into `state` at `at`."""
    with session_scope() as session:
        data_flow = session.get(DataFlow, flow_id)
        assert data_flow is not None
        receipt = Receipt(
            account_id=data_flow.account_id, partner_id=data_flow.source_partner_id, protocol="rest",
            folder="upload", name=file, size=9, sha256="0" * 64, storage_path=f".store/x/{at.timestamp()}",
            received_at=at,
        )  # fmt: skip
        session.add(receipt)
        session.flush()
        transfer = Transfer(
            receipt_id=receipt.id or 0, data_flow_id=flow_id, account_id=data_flow.account_id,
            state=state, error=error, destination_uri=destination, finished_at=at, updated_at=at,
        )  # fmt: skip
        session.add(transfer)
        session.flush()
        return transfer.id or 0
