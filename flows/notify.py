"""The notify flow: what a rule's Prefect automation runs when its event comes (deployments/notify_rules.py).

Its parameters come from the triggering event (the automation renders them): the rule, when the
event occurred, and the receipt and transfer it names. The store, not the event, says what to
tell: the file's state, error and links are read afresh. With a digest the automation fires once
per window (Prefect's reactive trigger waits out `within` after firing) and schedules this run at
the window's end; it lists every matching file of the window in one message.

A channel that is down is tried again with backoff here (core/notify/send.py), in this run of its
own: no transfer ever waits for a notification. After the last try the run ends Failed, which the
Prefect UI shows, and `notify channel list` shows the channel failing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from anyio import to_thread
from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from core.db import session_scope
from core.models import NotifyRule
from core.notify import notices, send
from core.redact import install_log_scrubber
from flows import names

# A file's event says it occurred when its outcome was recorded (finished_at), so Prefect's window,
# by event time, and the store's query, by finished_at, agree. The window starts a little before
# its first event all the same: Prefect may evaluate a burst's events a little out of order, and
# the first it sees fires the rule.
DIGEST_LEAD = timedelta(seconds=1)


@flow(name=names.NOTIFY, flow_run_name="notify rule {rule_id}", log_prints=False, persist_result=False)
async def notify(rule_id: int, occurred: str = "", receipt: str = "", transfer: str = "") -> State[Any]:
    """Tell the rule's channel about the file the event named (or, with a digest, the window's files)."""
    install_log_scrubber()
    found = await to_thread.run_sync(_compose, rule_id, occurred, _int(receipt), _int(transfer))
    if found is None:
        return Completed(message="nothing to tell (the rule or the file is gone)")
    channel_id, notice = found
    try:
        await to_thread.run_sync(send.deliver, channel_id, notice)
    except send.SendError as exc:
        return Failed(message=str(exc))
    return Completed(message=f"told about {notice.total} file{'s' if notice.total != 1 else ''}")


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def _compose(
    rule_id: int, occurred: str, receipt_id: int | None, transfer_id: int | None
) -> tuple[int, notices.Notice] | None:
    with session_scope() as session:
        rule = session.get(NotifyRule, rule_id)
        if rule is None:
            return None
        if rule.digest_seconds:
            start = datetime.fromisoformat(occurred) - DIGEST_LEAD
            items, total = notices.matching(
                session, rule, start, start + DIGEST_LEAD + timedelta(seconds=rule.digest_seconds)
            )
        else:
            item = notices.one(session, rule, receipt_id, transfer_id)
            items, total = ([item], 1) if item is not None else ([], 0)
        if not total:
            return None
        return rule.channel_id, notices.notice(session, rule, items, total)
