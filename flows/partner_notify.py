"""The partner notice flow: what the `tradelane partner notices` automation runs for each
`tradelane.file.rejected` event (deployments/partner_notices.py). The store says whether the
partner wants to hear and what to say (core/notify/partner_notices.py); sent with retries and
backoff here, in a run of its own, so no transfer waits for it."""

from __future__ import annotations

import time
from typing import Any

from anyio import to_thread
from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from core.db import session_scope
from core.notify import partner_notices, send
from core.redact import install_log_scrubber
from flows import names


@flow(name=names.NOTIFY, flow_run_name="tell partner: transfer {transfer}", persist_result=False)
async def partner_rejected(transfer: str = "") -> State[Any]:
    install_log_scrubber()
    if not transfer.strip().isdigit():
        return Completed(message="no transfer named")
    notice = await to_thread.run_sync(_compose, int(transfer))
    if notice is None:
        return Completed(message="nothing to tell (no contacts, or not wanted)")
    try:
        await to_thread.run_sync(_send, notice)
    except send.SendError as exc:
        return Failed(message=str(exc))
    return Completed(message=f"told {len(notice.recipients)} contact(s)")


def _compose(transfer_id: int) -> partner_notices.PartnerNotice | None:
    with session_scope() as session:
        return partner_notices.rejected(session, transfer_id)


def _send(notice: partner_notices.PartnerNotice) -> None:
    delay = send.FIRST_DELAY_SECONDS
    for attempt in range(1, send.TRIES + 1):
        try:
            send.mail(notice.recipients, notice.subject, notice.body)
            return
        except send.SendError:
            if attempt == send.TRIES:
                raise
            time.sleep(delay)
            delay *= 2
