"""One Prefect automation, `tradelane partner notices`, that tells partners of their rejected
uploads: on each `tradelane.file.rejected` event it runs the `tradelane-notify/partner-rejected`
deployment (flows/partner_notify.py), which e-mails the partner's contacts if it asked
(`partner set --contact-email … --tell-rejected`). The same design as the rules' automations
(deployments/notify_rules.py): the action is one of our flow runs, the store is the truth.

Made once per process start if missing (found by name; one edited in the UI is left as edited).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from core.notify import events
from deployments.notify_rules import Register, _read_automations
from flows import names

log = logging.getLogger("tradelane.notify")

NAME = "tradelane partner notices"
DEPLOYMENT = "partner-rejected"


class PartnerNoticeMirror:
    def __init__(self, work_pool: str, register: Register) -> None:
        self.work_pool = work_pool
        self.register = register
        self.done = False

    async def once(self) -> None:
        if self.done:
            return
        from flows.partner_notify import partner_rejected

        await self.register(partner_rejected, self.work_pool, name=DEPLOYMENT, tags=["notify"])
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"{names.NOTIFY}/{DEPLOYMENT}")
            if not any(a.name == NAME for a in await _read_automations(client)):
                await client.create_automation(
                    AutomationCore(
                        name=NAME,
                        description="tradelane: e-mail a partner's contacts when its upload is rejected "
                        "(tradelane partner set P --contact-email … --tell-rejected)",
                        trigger=EventTrigger(
                            expect={f"{events.PREFIX}rejected"},
                            match={"prefect.resource.id": f"{events.PREFIX}*"},
                            posture=Posture.Reactive,
                            threshold=1,
                            within=timedelta(0),
                        ),
                        actions=[
                            RunDeployment(
                                source="selected",
                                deployment_id=deployment.id,
                                parameters={
                                    "transfer": {
                                        "__prefect_kind": "jinja",
                                        "template": "{{ event.payload.transfer }}",
                                    }
                                },
                                job_variables=None,
                            )
                        ],
                    )
                )
                log.info("created the Prefect automation %r", NAME)
        self.done = True
