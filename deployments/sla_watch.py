"""SLAs checked by the deployments' reconciler, every few seconds, against the store.

Why a check of the store here rather than a Prefect proactive automation counting
`tradelane.file.received` events: a proactive trigger's window runs from when it was armed (or
from an `after` event), not to a wall-clock time on chosen weekdays in a time zone, so "by 09:00
Europe/Berlin, Monday to Friday" is not expressible in it; and events are emitted best-effort (a
file taken in while the Prefect API was away has no event), while the receipt in the store is
written before anything else happens to a file. Why not a cron-scheduled deployment per SLA:
cron has minute granularity and the run starts only when the scheduler made it and a worker
picked it up; the reconciler already runs every `TRADELANE_RECONCILE_INTERVAL_SECONDS` (2 s) in
every cluster (`up`'s runner child, each `serve dispatcher`), so a deadline is checked within
seconds. Several reconcilers at once: each deadline is claimed by one (core/notify/slas.py).

The alert is sent in the background (with the channel's retries, core/notify/send.py), so a slow
channel never holds the reconciler. Delivery is at most once: a checker that dies between its
claim and the send loses that alert (the SLA still shows `missed` in `tradelane sla list`).
"""

from __future__ import annotations

import asyncio
import logging

from anyio import to_thread

from core.db import session_scope
from core.models import utcnow
from core.notify import send, slas

log = logging.getLogger("tradelane.notify")


class SlaWatch:
    def __init__(self) -> None:
        self.sending: set[asyncio.Task[None]] = set()

    async def once(self) -> None:
        for miss in await to_thread.run_sync(_check):
            task = asyncio.create_task(self._tell(miss))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    async def _tell(self, miss: slas.Miss) -> None:
        try:
            await to_thread.run_sync(send.deliver, miss.channel_id, miss.notice)
        except send.SendError as exc:
            log.error("SLA %s missed, but its alert was not sent: %s", miss.notice.filters["sla"], exc)
        else:
            log.info("SLA %s missed: alert sent", miss.notice.filters["sla"])


def _check() -> list[slas.Miss]:
    with session_scope() as session:
        return slas.check_due(session, utcnow())
