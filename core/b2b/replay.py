"""The replay guard for signed peer requests (DESIGN-12 §5.3 step 5), and the audit of refusals.

A nonce is recorded in `peer_nonce` with the key that signed it, in its own committed transaction,
so a second request carrying it - at once from another connection, or after a restart - is refused
by the primary key. A signature is accepted for at most `MAX_AGE` after its `created` time, which
may itself lie up to `MAX_SKEW` ahead of our clock, so a nonce seen `MAX_AGE + MAX_SKEW` ago can no
longer come back with a valid signature: `prune` deletes those.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core import audit
from core.b2b.signing import MAX_AGE, MAX_SKEW, PeerRefused
from core.db import session_scope
from core.models import PeerNonce

KEEP_NONCES = MAX_AGE + MAX_SKEW


def first_use(key_id: str, nonce: str) -> bool:
    """Record `nonce` for `key_id`; False if it was recorded before (a replay). Committed on return."""
    try:
        with session_scope() as session:
            session.add(PeerNonce(key_id=key_id, nonce=nonce))
    except IntegrityError:
        return False
    return True


def prune(now: datetime | None = None) -> int:
    """Delete the nonces no valid signature can carry any more; how many went."""
    cutoff = (now or datetime.now(UTC)) - KEEP_NONCES
    with session_scope() as session:
        result = session.exec(delete(PeerNonce).where(col(PeerNonce.seen_at) < cutoff))
        return int(result.rowcount or 0)


class RefusalAudit:
    """Writes `peer.refused` at most once a minute per key and reason, so a flood of bad requests
    cannot flood the audit. Unknown keys share one bucket: their ids are whatever a stranger sends.
    """

    def __init__(self, interval_seconds: float = 60.0) -> None:
        self.interval = interval_seconds
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def record(
        self, refused: PeerRefused, *, key_id: str | None, known: bool, path: str, remote_addr: str | None
    ) -> bool:
        """Audit `refused` unless its bucket was audited within the interval; whether it was written."""
        bucket = (key_id if known and key_id else "?", refused.reason)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(bucket)
            if last is not None and now - last < self.interval:
                return False
            self._last[bucket] = now
            if len(self._last) > 10_000:  # forget old buckets rather than grow for ever
                self._last = {k: v for k, v in self._last.items() if now - v < self.interval}
        with session_scope() as session:
            audit.record(
                session,
                "peer.refused",
                actor=f"peer-key:{key_id}" if known and key_id else "peer",
                target=path,
                remote_addr=remote_addr,
                reason=refused.reason,
                status=refused.status,
                message=refused.message,
                key_id=(key_id or "")[:64],
            )
        return True
