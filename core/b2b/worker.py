"""The peer worker: one background thread in the API process for the control messages between
instances (DESIGN-12 §5.7, §5.10). The database is the queue: a restart picks up where it stopped.

Each sweep (every second, or at once when woken):
* revoke notices still owed to the other instance (`peer.revoke_to_send`) are sent, signed; a
  failure is retried after 5 s, 10 s, 20 s ... at most 60 s apart, for 7 days;
* every active cross-instance connection asks the other side for its state every
  TRADELANE_PEER_CHECK_SECONDS: a revoked answer revokes ours (so a lost notice is repaired); no
  answer, or a refusal of our key, marks the peer unreachable (`peer.unreachable`, never revoked),
  and an answer after that marks it reachable again (`peer.reachable`, `on_peer_reachable`);
* invitations past their expiry are written `expired` (with their audit rows);
* nonces no signature can carry any more are pruned from `peer_nonce`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from core import transfers
from core.b2b import connections, keys, peer_client, replay
from core.b2b.peer_client import PeerAnswered, PeerTarget, PeerUnavailable
from core.config import get_settings
from core.db import session_scope
from core.errors import StatusError
from core.models import Connection, ConnectionState, Peer, utcnow
from core.sweeper import SweepThread

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0
NOTICE_FIRST_SECONDS = 5.0
NOTICE_MAX_SECONDS = 60.0
NOTICE_GIVE_UP = timedelta(days=7)
PRUNE_EVERY_SECONDS = 60.0
FINAL = (ConnectionState.revoked, ConnectionState.declined, ConnectionState.expired)


def notice_delay(attempts: int) -> float:
    """Seconds before the next try of a revoke notice that failed `attempts` times (5, 10, 20 ... 60)."""
    return float(min(NOTICE_MAX_SECONDS, NOTICE_FIRST_SECONDS * 2 ** max(0, attempts - 1)))


def _target(peer: Peer) -> PeerTarget:
    return PeerTarget(peer.base_url, keys.our_key(peer))


# --- revoke notices --------------------------------------------------------------------------------


def due_notices(now: datetime | None = None) -> list[int]:
    now = now or utcnow()
    with session_scope() as session:
        rows = session.exec(
            select(Peer.id).where(
                Peer.revoke_to_send == True,  # noqa: E712
                col(Peer.their_connection_uid).is_not(None),
                col(Peer.next_notice_at) <= now,
            )
        ).all()
    return [row for row in rows if row is not None]


def send_notice(peer_id: int) -> bool:
    """Tell the other side of `peer_id`'s connection that we revoked it; whether it was told."""
    with session_scope() as session:
        peer = session.get(Peer, peer_id)
        if peer is None or not peer.revoke_to_send:
            return False
        target = _target(peer)
    try:
        peer_client.send_revoke(target)
    except (PeerAnswered, PeerUnavailable) as exc:
        with session_scope() as session:
            peer = session.get(Peer, peer_id)
            if peer is None:
                return False
            now = utcnow()
            peer.notice_attempts += 1
            peer.last_error = f"revoke notice: {exc}"[:500]
            conn = session.get(Connection, peer.connection_id)
            revoked_at = conn.revoked_at if conn else None
            if revoked_at is not None and now - connections._aware(revoked_at) > NOTICE_GIVE_UP:
                peer.revoke_to_send = (
                    False  # the state check on their side has long repaired it, or never will
                )
                peer.next_notice_at = None
            else:
                peer.next_notice_at = now + timedelta(seconds=notice_delay(peer.notice_attempts))
            peer.updated_at = now
            session.add(peer)
        return False
    with session_scope() as session:
        peer = session.get(Peer, peer_id)
        if peer is not None:
            peer.revoke_to_send = False
            peer.next_notice_at = None
            peer.updated_at = utcnow()
            session.add(peer)
    return True


# --- state checks ----------------------------------------------------------------------------------


def due_checks(now: datetime | None = None) -> list[int]:
    """Peers of active connections whose state check is due."""
    now = now or utcnow()
    with session_scope() as session:
        rows = session.exec(
            select(Peer.id)
            .join(Connection, col(Connection.id) == Peer.connection_id)
            .where(
                Connection.state == ConnectionState.active,
                col(Peer.their_connection_uid).is_not(None),
                (col(Peer.next_check_at).is_(None)) | (col(Peer.next_check_at) <= now),
            )
        ).all()
    return [row for row in rows if row is not None]


def on_peer_reachable(session: Session, conn: Connection) -> int:
    """The other instance answers again after it did not: make the connection's waiting transfers
    due at once (the dispatcher's next sweep carries them). Returns how many."""
    assert conn.id is not None
    return transfers.wake_waiting(session, connection_id=conn.id)


def _mark_unreachable(session: Session, peer: Peer, conn: Connection, reason: str) -> None:
    now = utcnow()
    peer.last_error = reason[:500]
    if peer.reachable:
        peer.reachable = False
        peer.unreachable_since = now
        connections._audit_sides(session, conn, "peer.unreachable", actor="system", reason=peer.last_error)


def _mark_reachable(session: Session, peer: Peer, conn: Connection) -> None:
    peer.last_error = None
    if not peer.reachable:
        peer.reachable = True
        peer.unreachable_since = None
        connections._audit_sides(session, conn, "peer.reachable", actor="system")
        on_peer_reachable(session, conn)


def check(peer_id: int) -> str | None:
    """Ask the other side for its state; apply it. The state seen, or None when it did not answer."""
    with session_scope() as session:
        peer = session.get(Peer, peer_id)
        if peer is None:
            return None
        target = _target(peer)
    answer: dict[str, object] | None = None
    failure: str | None = None
    try:
        answer = peer_client.connection_state(target)
    except (PeerAnswered, PeerUnavailable) as exc:
        # A refusal of our key (401/403/410) means the peer forgot us: unreachable, not revoked.
        failure = str(exc)
    with session_scope() as session:
        peer = session.get(Peer, peer_id)
        conn = session.get(Connection, peer.connection_id) if peer else None
        if peer is None or conn is None:
            return None
        now = utcnow()
        peer.checked_at = peer.updated_at = now
        peer.next_check_at = now + timedelta(seconds=get_settings().peer_check_seconds)
        seen: str | None = None
        if answer is None:
            _mark_unreachable(session, peer, conn, failure or "no answer")
        else:
            seen = str(answer.get("state"))
            view = answer.get("allow_sender_view")
            if isinstance(view, bool):
                peer.view_allowed_seen = view
            _mark_reachable(session, peer, conn)
            if seen in FINAL and conn.state not in FINAL:
                their_side = "receiver" if conn.sender_account_id is not None else "sender"
                connections.end(session, conn, actor="peer", side=their_side)
                connections._audit_sides(
                    session, conn, "peer.revoke.received", actor="peer", side=their_side, by="state check"
                )
        session.add(peer)
        return seen


# --- the sweep and the thread ----------------------------------------------------------------------

PARALLEL = 8  # peers called at once in one sweep


def _quietly(call: Callable[[int], object], what: str) -> Callable[[int], None]:
    def run(peer_id: int) -> None:
        try:
            call(peer_id)
        except (StatusError, keys.BadKey, SQLAlchemyError):
            log.exception("peer worker: %s peer %s failed", what, peer_id)

    return run


class Sweeper:
    """One sweep of everything due; remembers when it last pruned nonces."""

    def __init__(self) -> None:
        self._pruned_at = 0.0

    def sweep(self) -> int:
        handled = 0
        with session_scope() as session:
            handled += connections.expire_due(session)
        # Side by side, so one peer that takes its whole timeout to fail does not delay the others.
        with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="peer-call") as pool:
            notices = pool.map(_quietly(send_notice, "sending the revoke notice of"), due_notices())
            checks = pool.map(_quietly(check, "checking"), due_checks())
            handled += len(list(notices)) + len(list(checks))
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY_SECONDS:
            handled += replay.prune()
            self._pruned_at = time.monotonic()
        return handled


def _sweep_once() -> int:
    return _sweeper.sweep()


_sweeper = Sweeper()
worker = SweepThread("peer-worker", _sweep_once, lambda: SWEEP_SECONDS)
