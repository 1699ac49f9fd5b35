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

Each check is also an event in Prefect's feed, `tradelane.sla.met` or `tradelane.sla.missed`
(resource `tradelane.sla.<id>`, related account and partner), for the UI and for automations of
one's own. The alert is sent in the background (with the channel's retries,
core/notify/send.py), so a slow channel never holds the reconciler. Delivery is at most once: a
checker that dies between its claim and the send loses that alert (the SLA still shows `missed`
in `tradelane sla list`).
"""

from __future__ import annotations

import asyncio
import logging

from anyio import to_thread
from prefect.events import emit_event

from core.db import session_scope
from core.models import utcnow
from core.notify import events, send, slas
from core.notify.notices import Notice

log = logging.getLogger("tradelane.notify")


class SlaWatch:
    def __init__(self) -> None:
        self.sending: set[asyncio.Task[None]] = set()

    async def once(self) -> None:
        for checked in await to_thread.run_sync(_check):
            _emit(checked)
            if checked.notice is not None:
                task = asyncio.create_task(self._tell(checked.sla, checked.channel_id, checked.notice))
                self.sending.add(task)
                task.add_done_callback(self.sending.discard)

    async def _tell(self, sla: str, channel_id: int, notice: Notice) -> None:
        try:
            await to_thread.run_sync(send.deliver, channel_id, notice)
        except send.SendError as exc:
            log.error("SLA %s missed, but its alert was not sent: %s", sla, exc)
        else:
            log.info("SLA %s missed: alert sent", sla)


def _emit(checked: slas.Checked) -> None:
    try:
        emit_event(
            event=f"tradelane.sla.{checked.outcome}",
            resource={
                "prefect.resource.id": f"tradelane.sla.{checked.sla_id}",
                "prefect.resource.name": checked.sla,
            },
            related=[
                {
                    "prefect.resource.id": events.account_resource_id(checked.account_id),
                    "prefect.resource.role": "account",
                },
                {
                    "prefect.resource.id": events.partner_resource_id(checked.partner_id),
                    "prefect.resource.role": "partner",
                },
            ],
            payload={
                "deadline": checked.deadline.isoformat(),
                "received": checked.count,
                "expected": checked.expected,
            },
        )
    except Exception:  # an event must never stop the checks
        log.exception("could not emit the SLA event of %s", checked.sla)


def _check() -> list[slas.Checked]:
    with session_scope() as session:
        return slas.check_due(session, utcnow())
