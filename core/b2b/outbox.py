"""The sender's outbox: files put into `b2b/<outbox>/` go through intake (protocol `b2b`).

The bytes are kept in the store and linked into no folder. At commit, in the receipt's own
transaction, the connection decides: active → one pending transfer for the receiver's landing
flow; pending → the receipt is `held` (released when the connection becomes active). A revoked,
declined or expired connection refuses the file at the start and again at the commit, so a revoke
during a long upload is honoured. `matching_flows` is never used for these receipts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from sqlmodel import Session, select

from core import audit, intake
from core.b2b import connections
from core.b2b.caller import Caller
from core.db import session_scope
from core.endpoints.base import CHUNK_SIZE
from core.errors import Forbidden, Invalid, StatusError
from core.models import Connection, ConnectionState, Receipt, Transfer, TransferState


def folder_of(conn: Connection) -> str:
    return f"b2b/{conn.outbox_name}"


@dataclass(frozen=True)
class OutboxSender:
    """An account's login writing into one connection's outbox (an intake `Sender`)."""

    account_id: int
    name: str  # the audit actor: "cli", "user:alice@acme.example"
    connection_id: int
    max_file_bytes: int | None = None
    partner_id: int | None = None  # never a partner: partners do not see outboxes

    def refuse_if_ended(self) -> None:
        with session_scope() as session:
            try:
                connections.check_can_receive(session, self.connection_id)
            except StatusError as exc:
                raise intake.SenderRefused(exc.message) from None


def attach(connection_id: int, actor: str) -> Callable[[Session, Receipt], None]:
    """Run in the receipt's transaction: tie it to the connection, and transfer or hold it."""

    def also(session: Session, receipt: Receipt) -> None:
        conn = session.get(Connection, connection_id)
        assert conn is not None and receipt.id is not None
        receipt.connection_id = connection_id
        if conn.state == ConnectionState.active and conn.data_flow_id is not None:
            session.add(
                Transfer(receipt_id=receipt.id, data_flow_id=conn.data_flow_id, state=TransferState.pending)
            )
        else:
            receipt.held = True  # pending: released on activation; ended meanwhile: "not sent"
        session.add(receipt)
        audit.record(
            session,
            "connection.send",
            actor=actor,
            account_id=receipt.account_id,
            target=f"connection:{connection_id}",
            file=receipt.name,
            receipt=receipt.id,
            held=receipt.held,
        )

    return also


class OutboxUpload(intake.Upload):
    """An intake upload whose commit attaches the receipt to its connection (REST and `connect send`)."""

    def __init__(self, sender: OutboxSender, folder: str, name: str, **kwargs: object) -> None:
        super().__init__(sender, folder, name, protocol="b2b", **kwargs)  # type: ignore[arg-type]
        self.connection_id = sender.connection_id

    def commit(
        self,
        data_flow_ids: list[int] | None = None,
        also: Callable[[Session, Receipt], None] | None = None,
    ) -> Receipt:
        return super().commit(data_flow_ids=[], also=attach(self.connection_id, self.partner_name))


def begin(
    session: Session, caller: Caller, conn: Connection, name: str, *, remote_addr: str | None = None
) -> OutboxUpload:
    """Start one file into `conn`'s outbox as `caller` (the sending side, admin or operator)."""
    caller.require("admin", "operator")
    if connections.side_of(conn, caller.account_id) != "send" or conn.outbox_name is None:
        raise Forbidden("only the sending side puts files into a connection")
    assert conn.id is not None
    sender = OutboxSender(caller.account_id, caller.actor, conn.id)
    try:
        return OutboxUpload(sender, folder_of(conn), name, remote_addr=remote_addr)
    except intake.InvalidFileName as exc:
        raise Invalid(str(exc)) from None


@dataclass(frozen=True)
class Sent:
    receipt: Receipt
    transfer_id: int | None  # None: held until the connection is active
    held: bool


def write(
    caller: Caller, conn_ref: str | int, name: str, stream: BinaryIO, *, require_active: bool = True
) -> Sent:
    """Take a whole stream into the connection's outbox (`connect send`: active connections only)."""
    with session_scope() as session:
        conn = connections.require(session, caller, conn_ref)
        if require_active:
            connections.check_can_send(session, caller, conn)
        upload = begin(session, caller, conn, name)
    with upload:
        while chunk := stream.read(CHUNK_SIZE):
            upload.write(chunk)
        receipt = upload.commit()
    with session_scope() as session:
        transfer = session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id)).first()
    return Sent(receipt, transfer.id if transfer else None, receipt.held)
