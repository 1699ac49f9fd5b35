"""The Prefect automations that tell partners of their own files, and the deployments they run
(flows/partner_notify.py), which e-mail the partner's contacts if it asked (`partner set
--contact-email … --tell-rejected --tell-downloads`). The same design as the rules' automations
(deployments/notify_rules.py): the action is one of our flow runs, the store is the truth.

* `tradelane partner notices`: on each `tradelane.file.rejected` event, runs
  `tradelane-notify/partner-rejected`.
* `tradelane partner download notices`: on `tradelane.file.delivered` events that name a
  `recipient` (a delivery into a partner's `download/`), one window per recipient partner
  (`for_each` on its id): the first event of a window fires, the window is waited out (`within`,
  `TRADELANE_PARTNER_DOWNLOAD_DIGEST_SECONDS`) and `tradelane-notify/partner-download` runs at its
  end, listing every file delivered into that partner's mailbox in the window: a burst of 1,000
  files is one e-mail, as a rule's `--digest`.

Made once per process start if missing (found by name; one edited in the UI is left as edited,
except the download notices' window, which follows the setting).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger

from core.config import get_settings
from deployments.notify_rules import Register, _read_automations, _text, file_event_automation
from flows import names

log = logging.getLogger("tradelane.notify")

NAME = "tradelane partner notices"
DEPLOYMENT = "partner-rejected"
DOWNLOAD_NAME = "tradelane partner download notices"
DOWNLOAD_DEPLOYMENT = "partner-download"
RECIPIENT_ID = "related:recipient:prefect.resource.id"


def rejected_automation(deployment_id: UUID) -> AutomationCore:
    return file_event_automation(
        name=NAME,
        description="tradelane: e-mail a partner's contacts when its upload is rejected "
        "(tradelane partner set P --contact-email … --tell-rejected)",
        on="rejected",
        deployment_id=deployment_id,
        parameters={"transfer": _text("{{ event.payload.transfer }}")},
    )


def download_automation(deployment_id: UUID, digest_seconds: int) -> AutomationCore:
    parameters: dict[str, Any] = {
        "transfer": _text("{{ event.payload.transfer }}"),
        "occurred": _text("{{ event.occurred }}"),
        "digest_seconds": digest_seconds,
    }
    return file_event_automation(
        name=DOWNLOAD_NAME,
        description="tradelane: e-mail a partner's contacts when files are delivered into its "
        f"download/, one message per {digest_seconds} s "
        "(tradelane partner set P --contact-email … --tell-downloads)",
        on="delivered",
        deployment_id=deployment_id,
        parameters=parameters,
        digest_seconds=digest_seconds,
        match_related={"prefect.resource.role": "recipient"},
        for_each={RECIPIENT_ID},
    )


class PartnerNoticeMirror:
    def __init__(self, work_pool: str, register: Register) -> None:
        self.work_pool = work_pool
        self.register = register
        self.done = False

    async def once(self) -> None:
        if self.done:
            return
        from flows.partner_notify import partner_download, partner_rejected

        await self.register(partner_rejected, self.work_pool, name=DEPLOYMENT, tags=["notify"])
        await self.register(partner_download, self.work_pool, name=DOWNLOAD_DEPLOYMENT, tags=["notify"])
        digest = get_settings().partner_download_digest_seconds
        async with get_client() as client:
            found = {a.name: a for a in await _read_automations(client)}
            if NAME not in found:
                await client.create_automation(rejected_automation(await _deployment(client, DEPLOYMENT)))
                log.info("created the Prefect automation %r", NAME)
            wanted = download_automation(await _deployment(client, DOWNLOAD_DEPLOYMENT), digest)
            await _keep_downloads(client, found.get(DOWNLOAD_NAME), wanted)
        self.done = True


async def _deployment(client: PrefectClient, name: str) -> UUID:
    return (await client.read_deployment_by_name(f"{names.NOTIFY}/{name}")).id


async def _keep_downloads(client: PrefectClient, existing: Automation | None, wanted: AutomationCore) -> None:
    """Create the download notices' automation, or set its window to the setting's (the flow's
    window comes from the same automation, so the two always agree)."""
    if existing is None:
        await client.create_automation(wanted)
        log.info("created the Prefect automation %r", DOWNLOAD_NAME)
        return
    have, want = existing.trigger, wanted.trigger
    if isinstance(have, EventTrigger) and isinstance(want, EventTrigger) and have.within == want.within:
        return
    await client.update_automation(existing.id, wanted)
    log.info("set the window of the Prefect automation %r to the setting's", DOWNLOAD_NAME)
