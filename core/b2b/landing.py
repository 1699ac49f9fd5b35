"""The receiver-owned data flow that lands a connection's files, and its Prefect run labels.

`b2b:<connection id>` belongs to the receiver's account: source the connection, destination the
receiver's endpoint, `DIR/{name}`. `:` is refused in every name a user gives (`validate_name`), so
no user flow can take such a name; the receiver sees it in `flow list` and cannot change it.
The destination is never in a run name, tag or parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from core import audit
from core.models import Account, Connection, DataFlow, Peer, Receipt

PREFIX = "b2b:"


def flow_name(conn: Connection) -> str:
    return f"{PREFIX}{conn.id}"


def create_flow(session: Session, conn: Connection) -> DataFlow:
    """The landing flow of an active connection (the destination type's default conflict policy:
    exactly-once and SHA-256 checks are those of every delivery)."""
    assert conn.receiver_account_id is not None and conn.dest_endpoint_id is not None
    folder = (conn.dest_dir or "").strip("/")
    dest_path = f"{folder}/{{name}}" if folder else "{name}"
    return connection_flow(
        session, conn, conn.receiver_account_id, conn.dest_endpoint_id, dest_path, retries=5
    )


def connection_flow(
    session: Session,
    conn: Connection,
    account_id: int,
    dest_endpoint_id: int,
    dest_path: str,
    *,
    retries: int,
) -> DataFlow:
    """The hidden data flow `b2b:<id>` that carries a connection's files on this instance, owned by
    `account_id`: the receiver's landing flow, or (across instances) the sender's push flow."""
    assert conn.id is not None
    flow = DataFlow(
        account_id=account_id,
        name=flow_name(conn),
        source_connection_id=conn.id,
        source_partner_id=None,
        source_endpoint_id=None,
        source_folder="",
        pattern="*",
        dest_endpoint_id=dest_endpoint_id,
        dest_path=dest_path,
        validators=[],
        retries=retries,
        retry_delay_seconds=2.0,
        on_conflict=None,
    )
    session.add(flow)
    session.flush()
    audit.record(
        session, "flow.add", actor="system", account_id=account_id, target=flow.name, connection=conn.id
    )
    return flow


def is_landing(flow: DataFlow) -> bool:
    return flow.source_connection_id is not None


def refuse_change(session: Session, flow: DataFlow) -> None:
    """`flow set/remove/enable/disable b2b:N`: the connection owns it."""
    if not is_landing(flow):
        return
    conn = session.get(Connection, flow.source_connection_id)
    # The flow's own side: the receiver's landing flow, or the sender's push flow across instances.
    mine = conn and (conn.sender_name if conn.sender_account_id == flow.account_id else conn.receiver_name)
    name = mine or "?"
    raise ValueError(
        f"400: data flow {flow.name} belongs to connection {name!r}: change it with tradelane connect …"
    )


@dataclass(frozen=True)
class RunLabels:
    name: str
    tags: list[str]


def run_labels(session: Session, flow: DataFlow, first: Receipt, count: int) -> RunLabels | None:
    """`b2b acme/to-globex → globex/from-acme: po.json` and tags `connection:<id>`, `b2b`,
    `account:<sender>`, `account:<receiver>`, `flow:b2b:<id>`; None for other data flows."""
    if flow.source_connection_id is None:
        return None
    conn = session.get(Connection, flow.source_connection_id)
    if conn is None:
        return None
    sender = session.get(Account, conn.sender_account_id) if conn.sender_account_id else None
    receiver = session.get(Account, conn.receiver_account_id) if conn.receiver_account_id else None
    what = first.name if count == 1 else f"{count} files"
    # Across instances one side is the peer's: named as it calls itself, tagged only where it lives.
    peer = session.exec(select(Peer).where(Peer.connection_id == conn.id)).first()
    remote = (peer.their_account if peer else None) or "?"
    s_name, r_name = (sender.name if sender else remote), (receiver.name if receiver else remote)
    local = [f"account:{a.name}" for a in (sender, receiver) if a is not None]
    return RunLabels(
        name=f"b2b {s_name}/{conn.sender_name or '?'} → {r_name}/{conn.receiver_name or '?'}: {what}",
        tags=[f"connection:{conn.id}", "b2b", *local, f"flow:{flow.name}"],
    )
