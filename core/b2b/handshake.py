"""Accepting (or declining) another instance's invitation: the accepter's side, DESIGN-12 §5.4.

1. The link's base is the inviter's address; we need our own TRADELANE_PUBLIC_URL (the inviter
   calls us there), and the base must pass the SSRF guard (public addresses only unless
   TRADELANE_PEER_ALLOW_PRIVATE=true): an account admin must not make us post into our network.
2. Preview: what the invitation offers; the flags must fit its direction before anything is written.
3. Our key pair and our row (`pending`, with its `peer`) are committed, so a retry after a lost
   answer offers the same key and connection id (the inviter then answers its first answer again).
4. The accept request, signed with that key (proof of possession).
5. The inviter's uid and key are stored, the connection becomes active (landing or push flow).
On a refusal our row is deleted and the inviter's status and message are reported: nothing changed
on either side.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from core import audit
from core.b2b import connections, keys, peer_client, tokens
from core.b2b.caller import Caller
from core.b2b.peer_client import PeerAnswered, PeerUnavailable
from core.config import get_settings
from core.errors import Invalid
from core.models import Account, Connection, ConnectionState, Peer, utcnow


def _text(answer: dict[str, Any], key: str, host: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not value or len(value) > 300:
        raise PeerUnavailable(f"the other instance at {host} answered without a usable {key}")
    return value


def _when(answer: dict[str, Any], host: str) -> datetime:
    try:
        return datetime.fromisoformat(_text(answer, "expires_at", host))
    except ValueError:
        raise PeerUnavailable(f"the other instance at {host} answered an unreadable expires_at") from None


def _earlier_attempt(session: Session, token: str) -> tuple[Connection, Peer] | None:
    """Our pending row of an earlier attempt at this same invitation whose answer was lost."""
    conn = session.exec(select(Connection).where(Connection.token_hash == tokens.token_hash(token))).first()
    if conn is None or conn.state != ConnectionState.pending:
        return None
    peer = connections.peer_of(session, conn)
    if peer is None or peer.their_key_id is not None:
        return None
    return conn, peer


def _forget(session: Session, conn: Connection, peer: Peer) -> None:
    session.delete(peer)
    session.delete(conn)
    session.commit()


def accept_across(
    session: Session,
    caller: Caller,
    base_url: str,
    token: str,
    *,
    name: str,
    dest: str | None,
    outbox: str | None,
) -> Connection:
    """Accept the invitation `token` of the instance at `base_url`, as `caller`'s account."""
    public = get_settings().public_url
    if not public:
        raise Invalid("set TRADELANE_PUBLIC_URL to the address the other instance can reach this one at")
    base_url = peer_client.check_peer_url(base_url)
    host = peer_client.host_of(base_url)
    offer = peer_client.preview(base_url, token)
    ours = offer.get("direction")
    if ours not in ("send", "receive"):
        raise PeerUnavailable(f"the other instance at {host} answered without a usable direction")
    their_account = _text(offer, "inviter_account", host)
    their_name = _text(offer, "name", host)
    expires_at = _when(offer, host)

    account = session.get(Account, caller.account_id)
    assert account is not None and account.id is not None
    connections.check_connection_name(name)
    earlier = _earlier_attempt(session, token)
    uid = str(uuid.uuid4())
    minted: tuple[str, str, str] | None = None
    if earlier is not None:  # the same key and id again: the inviter recognises a repeat
        old, old_peer = earlier
        uid, minted = old.uid, (old_peer.our_key_id, old_peer.our_public_key, old_peer.our_private_key)
        session.delete(old_peer)
        session.delete(old)
        session.flush()
    conn = Connection(uid=uid, direction="send" if ours == "receive" else "receive", created_by=caller.actor)
    if ours == "receive":
        if dest is None or outbox is not None:
            raise Invalid(
                "this invitation asks you to receive files: give --dest ENDPOINT[:DIR], not --outbox"
            )
        connections.check_name_free(session, account, name)
        row, folder = connections._dest(session, account, dest)
        conn.receiver_account_id, conn.receiver_name = account.id, name
        conn.dest_endpoint_id, conn.dest_dir = row.id, folder
        conn.sender_name = their_name
    else:
        if outbox is None or dest is not None:
            raise Invalid("this invitation asks you to send files: give --outbox NAME, not --dest")
        connections.check_outbox_name(outbox)
        connections.check_name_free(session, account, name, outbox)
        conn.sender_account_id, conn.sender_name, conn.outbox_name = account.id, name, outbox
        conn.receiver_name = their_name
    conn.token_hash = tokens.token_hash(token)
    conn.token_expires_at = expires_at
    session.add(conn)
    session.flush()
    assert conn.id is not None
    if minted is None:
        fresh = keys.mint()
        minted = (fresh.key_id, fresh.public_key, fresh.sealed_private_key)
    key_id, public_key, sealed = minted
    peer = Peer(
        connection_id=conn.id,
        base_url=base_url,
        their_account=their_account,
        our_key_id=key_id,
        our_public_key=public_key,
        our_private_key=sealed,
    )
    session.add(peer)
    session.commit()  # step 3: a lost answer can be retried with this key and id

    body = {
        "token": token,
        "peer_url": public,
        "connection_uid": conn.uid,
        "key_id": key_id,
        "public_key": public_key,
        "account": account.name,
        "name": name,
    }
    try:
        answer = peer_client.accept(base_url, body, key_id, sealed)
        their_uid = str(uuid.UUID(_text(answer, "connection_uid", host)))
        their_key_id = keys.check_key_id(_text(answer, "key_id", host))
        their_key = _text(answer, "public_key", host)
        keys.public_key(their_key)
    except PeerAnswered:
        _forget(session, conn, peer)  # refused: nothing changed on either side
        raise
    except (ValueError, keys.BadKey):
        raise PeerUnavailable(
            f"the other instance at {host} answered an unusable key or connection id"
        ) from None

    now = utcnow()
    peer.their_connection_uid, peer.their_key_id, peer.their_public_key = their_uid, their_key_id, their_key
    peer.their_account = _text(answer, "account", host)
    peer.checked_at = peer.updated_at = now
    peer.next_check_at = now + timedelta(seconds=get_settings().peer_check_seconds)
    session.add(peer)
    actor = caller.actor
    conn.state = ConnectionState.active
    conn.token_used_at = conn.accepted_at = conn.updated_at = now
    conn.accepted_by = actor
    session.add(conn)
    session.flush()
    connections._activate(session, conn)
    audit.record(
        session,
        "connection.accept",
        actor=actor,
        account_id=account.id,
        target=f"connection:{conn.id}",
        name=name,
        **({"dest": connections.dest_label(session, conn)} if ours == "receive" else {}),
    )
    audit.record(
        session,
        "peer.accept",
        actor=actor,
        account_id=account.id,
        target=f"connection:{conn.id}",
        peer=host,
        account=peer.their_account,
        key_id=their_key_id,
    )
    if answer.get("state") != ConnectionState.active:  # revoked there since (a repeated accept)
        their_side = "sender" if ours == "receive" else "receiver"
        connections.end(session, conn, actor="peer", side=their_side)
    session.flush()
    return conn


def decline_across(base_url: str, token: str) -> None:
    """Decline the invitation at the inviter's instance; nothing is stored here."""
    peer_client.decline(peer_client.check_peer_url(base_url), token)
