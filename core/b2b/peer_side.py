"""What this instance answers another one (`/peer/v1/...`, api/routes/peer.py), DESIGN-12 §5.3-5.7.

As the inviter (A): preview an invitation, accept it for the other instance (their key and ours
for this connection alone, in one transaction with the token's single use and the activation),
decline it. For an established connection: its state, and the other side's revoke notice.

Every answer is built from fixed words and the connection's own names: nothing here reads or
returns the receiving endpoint. Refusals are `core.errors.StatusError`s with the same messages the
local CLI gives (`connections.find_invitation`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlmodel import Session, select

from core import audit
from core.b2b import connections, keys, peer_client, tokens
from core.b2b.connections import _aware, _inviter_id, _inviter_name, _inviter_side_name
from core.b2b.signing import ConnectionSide
from core.config import get_settings
from core.db import session_scope
from core.endpoints.base import EndpointError
from core.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from core.models import Account, Connection, ConnectionState, Peer, utcnow
from core.models import Endpoint as EndpointRow
from core.object_names import InvalidName, validate_name

ACCEPT_FIELDS = ("token", "peer_url", "connection_uid", "key_id", "public_key", "account", "name")
FINAL = (ConnectionState.revoked, ConnectionState.declined, ConnectionState.expired)


def find_connection(connection_id: int) -> ConnectionSide | None:
    """The connection a peer key was minted for, as the signature checks need it (PeerAuth)."""
    with session_scope() as session:
        conn = session.get(Connection, connection_id)
        if conn is None or conn.id is None:
            return None
        return ConnectionSide(conn.id, conn.uid, str(conn.state))


def token_of(data: Any) -> str:
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        raise Invalid("the request body must be a JSON object with the invitation token")
    return tokens.check_shape(data["token"].strip())


def _invitation(session: Session, token: str) -> Connection:
    """A usable invitation this instance issued, or the refusal the local CLI gives."""
    return connections.find_invitation(session, token)


def _their_direction(conn: Connection) -> str:
    """What the accepter does: the inviter sends, so it receives (and the other way round)."""
    return "receive" if conn.direction == "send" else "send"


def preview(data: Any) -> dict[str, Any]:
    """`{inviter_account, inviter_email, name, direction (the accepter's), expires_at}`."""
    token = token_of(data)
    with session_scope() as session:
        conn = _invitation(session, token)
        inviter = conn.created_by or ""
        assert conn.token_expires_at is not None
        return {
            "inviter_account": _inviter_name(session, conn),
            "inviter_email": inviter.removeprefix("user:") if inviter.startswith("user:") else None,
            "name": _inviter_side_name(conn),
            "direction": _their_direction(conn),
            "expires_at": _aware(conn.token_expires_at).isoformat(),
        }


def decline(data: Any) -> dict[str, Any]:
    token = token_of(data)
    with session_scope() as session:
        _invitation(session, token)
        connections.decline_here(session, token, actor="peer")
    return {"state": "declined"}


# --- accept ----------------------------------------------------------------------------------------


def _fields(data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        raise Invalid("the request body must be a JSON object")
    missing = [f for f in ACCEPT_FIELDS if not isinstance(data.get(f), str) or not data[f]]
    if missing:
        raise Invalid(f"the accept request needs {', '.join(missing)}")
    return {f: str(data[f]) for f in ACCEPT_FIELDS}


def _check_uid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise Invalid("connection_uid is not a connection id") from None


def _check_account(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName:
        raise Invalid(f"invalid account name {name!r}") from None


def _accepted(session: Session, conn: Connection, peer: Peer) -> dict[str, Any]:
    return {
        "connection_uid": conn.uid,
        "key_id": peer.our_key_id,
        "public_key": peer.our_public_key,
        "account": _inviter_name(session, conn),
        "name": _inviter_side_name(conn),
        "direction": conn.direction,
        "state": str(conn.state),
    }


def _repeat(session: Session, token: str, fields: dict[str, str]) -> dict[str, Any] | None:
    """The same accept again (same token, key and connection): the first answer, once more."""
    conn = session.exec(select(Connection).where(Connection.token_hash == tokens.token_hash(token))).first()
    if conn is None or _inviter_id(conn) is None:
        return None
    peer = connections.peer_of(session, conn)
    if (
        peer is None
        or peer.their_key_id != fields["key_id"]
        or peer.their_connection_uid != fields["connection_uid"]
    ):
        return None
    return _accepted(session, conn, peer)


def accept(data: Any, offered_key_id: str) -> dict[str, Any]:
    """The other instance accepts our invitation, offering its key (the request was signed with it).

    One transaction: the token's checks and single use, our key pair and the `peer` row, the
    activation (our landing or push flow, held files released), the audit.
    """
    fields = _fields(data)
    if fields["key_id"] != offered_key_id:
        raise Invalid("the request is signed with another key than the one it offers")
    token = tokens.check_shape(fields["token"])
    with session_scope() as session:
        again = _repeat(session, token, fields)
        if again is not None:
            return again
        conn = _invitation(session, token)
        if conn.direction == "receive":
            dest = session.get(EndpointRow, conn.dest_endpoint_id) if conn.dest_endpoint_id else None
            if dest is None or dest.removed_at is not None:
                inviter = _inviter_name(session, conn)
                raise Conflict(
                    f"the receiving side removed where files would land; ask {inviter} for a new invitation"
                )
        peer_url = peer_client.check_peer_url(fields["peer_url"])
        their_uid = _check_uid(fields["connection_uid"])
        name = connections.check_connection_name(fields["name"])
        account = _check_account(fields["account"])
        keys.check_key_id(fields["key_id"])
        keys.public_key(fields["public_key"])
        if session.exec(select(Peer).where(Peer.their_key_id == fields["key_id"])).first() is not None:
            raise Conflict("that key is already in use for another connection")
        minted = keys.mint()
        now = utcnow()
        assert conn.id is not None
        peer = Peer(
            connection_id=conn.id,
            base_url=peer_url,
            their_connection_uid=their_uid,
            their_account=account,
            their_key_id=fields["key_id"],
            their_public_key=fields["public_key"],
            our_key_id=minted.key_id,
            our_public_key=minted.public_key,
            our_private_key=minted.sealed_private_key,
            checked_at=now,
            next_check_at=now + timedelta(seconds=get_settings().peer_check_seconds),
        )
        if conn.direction == "send":  # we send: they receive, under their own name
            conn.receiver_name = name
        else:
            conn.sender_name = name
        connections._use_token(session, conn, ConnectionState.active)
        actor = f"peer:{account}@{peer_client.host_of(peer_url)}"
        conn.accepted_at = conn.updated_at = now
        conn.accepted_by = actor
        session.add(conn)
        session.add(peer)
        session.flush()
        connections._activate(session, conn)
        for side in connections._local_sides(conn):
            audit.record(
                session,
                "connection.accept",
                actor=actor,
                account_id=side,
                target=f"connection:{conn.id}",
                name=connections.side_name(conn, side),
            )
            audit.record(
                session,
                "peer.accept",
                actor=actor,
                account_id=side,
                target=f"connection:{conn.id}",
                peer=peer_client.host_of(peer_url),
                account=account,
                key_id=fields["key_id"],
            )
        return _accepted(session, conn, peer)


# --- an established connection -------------------------------------------------------------------


def state(connection_id: int) -> dict[str, Any]:
    """`{state, allow_sender_view}` of our side (answered also once revoked, so the other converges)."""
    with session_scope() as session:
        connections.expire_due(session)
        conn = session.get(Connection, connection_id)
        if conn is None:
            raise NotFound("no such connection")
        return {"state": str(conn.state), "allow_sender_view": conn.allow_sender_view}


def revoked_by_peer(connection_id: int) -> dict[str, Any]:
    """The other side revoked: so do we (actor `peer`, its side), unless already final."""
    with session_scope() as session:
        conn = session.get(Connection, connection_id)
        if conn is None:
            raise NotFound("no such connection")
        if conn.state not in FINAL:
            # The caller is the side that is not ours.
            their_side = "receiver" if conn.sender_account_id is not None else "sender"
            connections.end(session, conn, actor="peer", side=their_side)
            connections._audit_sides(session, conn, "peer.revoke.received", actor="peer", side=their_side)
        return {"state": str(conn.state)}


def files(connection_id: int) -> dict[str, Any]:
    """Our receiving folder for the sending instance: names, sizes, times, only while we allow it."""
    with session_scope() as session:
        conn = session.get(Connection, connection_id)
        if conn is None:
            raise NotFound("no such connection")
        receiver = session.get(Account, conn.receiver_account_id) if conn.receiver_account_id else None
        if receiver is None:
            raise Forbidden("only the sending side may list the receiving folder")
        if not conn.allow_sender_view:
            raise Forbidden(f"{receiver.name} has not allowed viewing its folder for this connection")
        if conn.state != ConnectionState.active:
            raise Conflict(f"the connection is {conn.state}: there is no folder to list")
        try:
            listed = connections.receiver_folder(session, conn)
        except EndpointError:
            raise Unavailable("the receiver's storage cannot be listed right now") from None
    return {
        "files": [
            {"name": f.name, "size": f.size, "modified": _aware(f.modified).isoformat()}
            for f in sorted(listed, key=lambda f: f.name)
        ]
    }
