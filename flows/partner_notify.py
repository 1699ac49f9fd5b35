"""The partner notice flows: what the `tradelane partner notices` automations run
(deployments/partner_notices.py), one per `tradelane.file.rejected` event, and one per digest
window of a partner's `tradelane.file.delivered` events into its `download/`. The store says
whether the partner wants to hear and what to say (core/notify/partner_notices.py); sent with
retries and backoff here, in a run of its own, so no transfer waits for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from anyio import to_thread
from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from core.db import session_scope
from core.notify import partner_notices, send
from core.redact import install_log_scrubber
from flows import names
from flows.notify import DIGEST_LEAD


@flow(name=names.NOTIFY, flow_run_name="tell partner: transfer {transfer}", persist_result=False)
async def partner_rejected(transfer: str = "") -> State[Any]:
    install_log_scrubber()
    if not transfer.strip().isdigit():
        return Completed(message="no transfer named")
    transfer_id = int(transfer)
    return await _tell(lambda: _compose(partner_notices.rejected, transfer_id))


@flow(name=names.NOTIFY, flow_run_name="tell partner: download, transfer {transfer}", persist_result=False)
async def partner_download(transfer: str = "", occurred: str = "", digest_seconds: int = 0) -> State[Any]:
    """Tell the partner that the file the event named (with a digest: every file delivered into its
    mailbox in the window the event opened) waits in its download/."""
    install_log_scrubber()
    if not transfer.strip().isdigit():
        return Completed(message="no transfer named")
    transfer_id = int(transfer)
    since = until = None
    if digest_seconds and occurred:
        since = datetime.fromisoformat(occurred) - DIGEST_LEAD
        until = since + DIGEST_LEAD + timedelta(seconds=digest_seconds)
    return await _tell(lambda: _compose(partner_notices.downloads, transfer_id, since, until))


async def _tell(compose: Callable[[], partner_notices.PartnerNotice | None]) -> State[Any]:
    notice = await to_thread.run_sync(compose)
    if notice is None:
        return Completed(message="nothing to tell (no contacts, or not wanted)")
    try:
        await to_thread.run_sync(_send, notice)
    except send.SendError as exc:
        return Failed(message=str(exc))
    return Completed(message=f"told {len(notice.recipients)} contact(s)")


def _compose(
    how: Callable[..., partner_notices.PartnerNotice | None], *args: Any
) -> partner_notices.PartnerNotice | None:
    with session_scope() as session:
        return how(session, *args)


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
