"""The sending instance's hidden data flow of a cross-instance connection (DESIGN-12 §5.5).

When a connection to another instance becomes active on the side that sends, the sender's account
gets a hidden endpoint `peer:<connection id>` (type `peer`, core/endpoints/peer.py: config
`{"connection": id}`, no secrets) and a data flow `b2b:<connection id>` from the connection to it.
So an outbox file is carried by the ordinary `transfer` flow - batching, retries, the run's
artifact, replay, exactly-once bookkeeping - and the peer endpoint pushes it to the other instance.

Like a landing flow (core/b2b/landing.py) the flow is the connection's: `source_connection_id` is
set, so `landing.refuse_change` keeps users from changing it, and its runs are named and tagged
`connection:<id>`, `b2b`, `account:<name>` by `landing.run_labels`.
"""

from __future__ import annotations

from sqlmodel import Session, select

from core import audit
from core.b2b import landing
from core.endpoints.peer import PeerEndpoint
from core.models import Connection, DataFlow
from core.models import Endpoint as EndpointRow

ENDPOINT_PREFIX = "peer:"


def endpoint_name(conn: Connection) -> str:
    return f"{ENDPOINT_PREFIX}{conn.id}"


def _endpoint(session: Session, conn: Connection) -> EndpointRow:
    """The connection's hidden peer endpoint, made once (`:` is refused in every name a user gives)."""
    assert conn.id is not None and conn.sender_account_id is not None
    name = endpoint_name(conn)
    row = session.exec(
        select(EndpointRow).where(EndpointRow.account_id == conn.sender_account_id, EndpointRow.name == name)
    ).first()
    if row is not None:
        return row
    settings, _ = PeerEndpoint.parse({"connection": conn.id})
    row = EndpointRow(account_id=conn.sender_account_id, name=name, type=PeerEndpoint.scheme)
    row.config = settings.stored()
    session.add(row)
    session.flush()
    audit.record(
        session,
        "endpoint.add",
        actor="system",
        account_id=conn.sender_account_id,
        target=name,
        type=row.type,
        connection=conn.id,
    )
    return row


def create_flow(session: Session, conn: Connection) -> DataFlow:
    """The push flow of a connection that just became active on this (the sending) instance, and
    its peer endpoint; the caller stores `conn.data_flow_id = flow.id`, as for a landing flow."""
    assert conn.id is not None and conn.sender_account_id is not None
    endpoint = _endpoint(session, conn)
    assert endpoint.id is not None
    return landing.connection_flow(session, conn, conn.sender_account_id, endpoint.id, "{name}", retries=2)
