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
from pathlib import Path
from typing import BinaryIO

from sqlmodel import Session, select

from core import audit, intake, transfers
from core.b2b import connections
from core.b2b.caller import Caller
from core.db import session_scope
from core.endpoints.base import CHUNK_SIZE
from core.errors import Forbidden, Invalid, NotFound, StatusError
from core.mailbox import outboxes
from core.models import Connection, ConnectionState, Receipt, Transfer
from core.tenancy import Scope


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
    user_id: int | None = None  # the account user writing (its receipt's `user_id`); None for the CLI

    def refuse_if_ended(self) -> None:
        with session_scope() as session:
            try:
                connections.check_can_receive(session, self.connection_id)
            except StatusError as exc:
                raise intake.SenderRefused(exc.message) from None


def attach(connection_id: int, actor: str, user_id: int | None = None) -> Callable[[Session, Receipt], None]:
    """Run in the receipt's transaction: tie it to the connection, and transfer or hold it."""

    def also(session: Session, receipt: Receipt) -> None:
        conn = session.get(Connection, connection_id)
        assert conn is not None and receipt.id is not None
        receipt.connection_id = connection_id
        receipt.user_id = user_id
        if conn.state == ConnectionState.active and conn.data_flow_id is not None:
            transfers.new_pending(session, receipt.id, conn.data_flow_id)
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
        self.user_id = sender.user_id

    def commit(
        self,
        data_flow_ids: list[int] | None = None,
        also: Callable[[Session, Receipt], None] | None = None,
    ) -> Receipt:
        return super().commit(
            data_flow_ids=[], also=attach(self.connection_id, self.partner_name, self.user_id)
        )


def begin(
    session: Session, caller: Caller, conn: Connection, name: str, *, remote_addr: str | None = None
) -> OutboxUpload:
    """Start one file into `conn`'s outbox as `caller` (the sending side, admin or operator)."""
    caller.require_to("connections.send")
    if connections.side_of(conn, caller.account_id) != "send" or conn.outbox_name is None:
        raise Forbidden("only the sending side puts files into a connection")
    assert conn.id is not None
    sender = OutboxSender(caller.account_id, caller.actor, conn.id, user_id=caller.user_id)
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


# -- an account user's outbox folder (`b2b/<outbox>/` over REST, SFTP, FTP) ------------------------


def writable(session: Session, scope: Scope, outbox_name: str) -> outboxes.Outbox:
    """The account's outbox `outbox_name` if files may be put into it now: pending (held) or active.

    NotFound for a name that is no outbox of the account (another account's included); Forbidden,
    with the revoke's date, for a revoked connection's."""
    scope.require_to("connections.send")
    box = outboxes.outbox_named(session, scope, outbox_name)
    if box is None:
        raise NotFound(f"no outbox b2b/{outbox_name}/ in this account")
    connections.check_can_receive(session, box.connection_id)
    return box


def sender_for(scope: Scope, box: outboxes.Outbox, max_file_bytes: int | None = None) -> OutboxSender:
    return OutboxSender(
        scope.account_id, scope.actor, box.connection_id, max_file_bytes, user_id=scope.user_id
    )


def begin_in(
    session: Session, scope: Scope, outbox_name: str, name: str, *, remote_addr: str | None = None
) -> OutboxUpload:
    """Start one file written by an account user into its outbox folder (REST)."""
    box = writable(session, scope, outbox_name)
    try:
        return OutboxUpload(sender_for(scope, box), f"b2b/{box.name}", name, remote_addr=remote_addr)
    except intake.InvalidFileName as exc:
        raise Invalid(str(exc)) from None


def take_staged(
    scope: Scope,
    outbox_name: str,
    name: str,
    staged: Path,
    *,
    sha256: str | None = None,
    remote_addr: str | None = None,
    max_file_bytes: int | None = None,
    also: intake.Also | None = None,
) -> Receipt:
    """Take in a file an SFTP/FTP session staged whole (core/mailbox/staging.py) from an outbox folder.

    The same commit as every upload (`core.intake`, protocol `b2b`), attached to the connection in
    the receipt's transaction: active → carried at once, pending → held. Raises the connection's
    refusal (StatusError) before anything is kept, and `intake.SenderRefused` for a revoke that
    came during the upload. `also` runs in that transaction too, after the attach.
    """
    with session_scope() as session:
        box = writable(session, scope, outbox_name)
    sender = sender_for(scope, box, max_file_bytes)
    return intake.receive_staged(
        sender,
        f"b2b/{box.name}",
        name,
        staged,
        sha256=sha256,
        protocol="b2b",
        remote_addr=remote_addr,
        data_flow_ids=[],
        also=_both(attach(box.connection_id, scope.actor, scope.user_id), also),
    )


def _both(first: intake.Also, then: intake.Also | None) -> intake.Also:
    if then is None:
        return first

    def both(session: Session, receipt: Receipt) -> None:
        first(session, receipt)
        then(session, receipt)

    return both
