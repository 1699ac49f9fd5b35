"""The AS2 worker: one background thread in the API process for AS2's deferred work.

Each sweep (every TRADELANE_AS2_SWEEP_SECONDS, or at once when woken) it
* posts async MDNs we owe partners (`mdn_status="pending"`), retrying with doubling pauses;
* resends messages whose async MDN is overdue, with the same Message-ID, and fails them after
  the profile's `max_resends`.
The database is the queue: a restart picks up where the last process stopped.
"""

from __future__ import annotations

import logging

from core.as2 import mdn as mdns
from core.as2 import messages, send
from core.as2.settings import as2_settings
from core.models import As2Message
from core.sweeper import SweepThread

log = logging.getLogger(__name__)


def due_mdns(limit: int = 100) -> list[int]:
    """Incoming messages whose asynchronous MDN we still owe."""
    return messages.due(As2Message.direction == "in", As2Message.mdn_status == "pending", limit=limit)


def sweep() -> int:
    """Do everything that is due now; returns how many items were handled."""
    handled = 0
    for row_id in due_mdns():
        try:
            mdns.deliver(row_id)
        except Exception:
            log.exception("AS2: delivering the async MDN of message row %s failed", row_id)
        handled += 1
    for row_id in send.due_resends():
        try:
            send.resend(row_id)
        except Exception:
            log.exception("AS2: resending message row %s failed", row_id)
        handled += 1
    return handled


worker = SweepThread("as2-worker", sweep, lambda: as2_settings().sweep_seconds)
