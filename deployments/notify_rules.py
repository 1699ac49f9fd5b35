"""Notification rules kept as Prefect automations, and the notify deployment they run.

Each rule of the store (`tradelane notify on …`, core/notify/rules.py) is one automation named
`tradelane notify rule <id>` (the Automations page of the Prefect UI): a reactive trigger on the
rule's `tradelane.file.<what>` events of its account (and partner, and data flow, through the
events' related resources), whose action runs the `tradelane-notify/notify` deployment on the work
pool with the event's time, receipt and transfer. Without a digest it fires for every event; with
one it fires on the first event of a window, waits out the window (Prefect's `within`) and
schedules the run at its end, which lists every file of the window in one message.

Why an automation that runs our deployment, rather than a webhook block calling the API: the
action is a flow run on the same work pool as the transfers, so it is retried, logged and shown
like them, needs no address of the API that the Prefect server could reach and no credential for
it, and the message is built from the store (the truth) by our code, with our retries.

`RuleMirror.once()` (the deployments' reconciler calls it every few seconds) creates the automation
of each new rule and deletes those of removed rules; an automation edited in the UI is left as
edited (it is found by name). Prefect is asked only when the rules changed (or at start): an
automation deleted by hand in the UI comes back at the next change or restart. Rules are kept
apart by account through the `account` related resource.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from anyio import to_thread
from prefect.client.orchestration import PrefectClient, get_client
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger, Posture

from core.db import session_scope
from core.models import NotifyRule
from core.notify import events, rules
from flows import events as file_events
from flows import names

log = logging.getLogger("tradelane.notify")

DEPLOYMENT = "notify"
Register = Callable[..., Awaitable[None]]
PREFIX = rules.automation_name(0).removesuffix("0")


def automation(rule: NotifyRule, deployment_id: UUID) -> AutomationCore:
    assert rule.id is not None
    related: list[dict[str, str]] = [
        {
            "prefect.resource.id": events.account_resource_id(rule.account_id),
            "prefect.resource.role": "account",
        }
    ]
    if rule.partner_id is not None:
        related.append(
            {
                "prefect.resource.id": events.partner_resource_id(rule.partner_id),
                "prefect.resource.role": "partner",
            }
        )
    if rule.data_flow_id is not None:
        related.append(
            {
                "prefect.resource.id": events.flow_resource_id(rule.data_flow_id),
                "prefect.resource.role": "data-flow",
            }
        )
    digest = rule.digest_seconds or 0
    parameters: dict[str, Any] = {
        "rule_id": rule.id,
        "occurred": _text("{{ event.occurred }}"),
        "receipt": _text("{{ event.payload.receipt }}"),
        "transfer": _text("{{ event.payload.transfer }}"),
    }
    return file_event_automation(
        name=rules.automation_name(rule.id),
        description=(
            f"tradelane: notify when a file is {rule.on}"
            + (f", one message per {digest} s" if digest else "")
            + " (tradelane notify rules; remove with tradelane notify off "
            + f"{rule.id})"
        ),
        on=rule.on,
        deployment_id=deployment_id,
        parameters=parameters,
        digest_seconds=digest,
        match_related=related,
    )


def file_event_automation(
    *,
    name: str,
    description: str,
    on: str,
    deployment_id: UUID,
    parameters: dict[str, Any],
    digest_seconds: int = 0,
    match_related: Any = None,
    for_each: set[str] | None = None,
) -> AutomationCore:
    """An automation on one kind of `tradelane.file.*` event that runs a deployment: at once, or
    (a digest) once per window of `digest_seconds`, at the window's end. The one shape of every
    notification automation tradelane keeps (rules, partner notices)."""
    trigger: dict[str, Any] = {}
    if match_related is not None:
        trigger["match_related"] = match_related
    if for_each:
        trigger["for_each"] = for_each
    action: dict[str, Any] = {}
    if digest_seconds:
        action["schedule_after"] = timedelta(seconds=digest_seconds)
    return AutomationCore(
        name=name,
        description=description,
        trigger=EventTrigger(
            expect={f"{events.PREFIX}{on}"},
            match={"prefect.resource.id": f"{events.PREFIX}*"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(seconds=digest_seconds),
            **trigger,
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=deployment_id,
                parameters=parameters,
                job_variables=None,
                **action,
            )
        ],
    )


def _text(template: str) -> dict[str, str]:
    """A parameter rendered from the event as text. (A bare "{{ … }}" string is rendered through
    `| tojson` by Prefect, which a datetime does not survive: the action would fail.)"""
    return {"__prefect_kind": "jinja", "template": template}


class RuleMirror:
    """Keeps one automation per rule, and the notify deployment they run, in Prefect."""

    def __init__(self, work_pool: str, register: Register) -> None:
        self.work_pool = work_pool
        self.register = register  # deployments/serve.py's, as for every deployment
        self.deployment_id: UUID | None = None
        # The rules whose automations this process made or found: unchanged, Prefect is not asked.
        self.kept: set[int] | None = None
        self.said_events_off = False

    async def once(self) -> None:
        wanted = await to_thread.run_sync(_load_rules)
        if wanted and not file_events.enabled() and not self.said_events_off:
            log.warning(
                "TRADELANE_EVENTS=off: no file events are emitted, so the %d notification rules never fire",
                len(wanted),
            )
            self.said_events_off = True
        if self.kept == {rule.id for rule in wanted}:
            return
        async with get_client() as client:
            found = {a.name: a for a in await _read_automations(client) if a.name.startswith(PREFIX)}
            names_wanted = {rules.automation_name(rule.id or 0): rule for rule in wanted}
            for name, existing in found.items():
                if name not in names_wanted:
                    await client.delete_automation(existing.id)
                    log.info("deleted the Prefect automation %r (its rule was removed)", name)
            missing = [rule for name, rule in names_wanted.items() if name not in found]
            if missing:
                deployment_id = await self._deployment()
            for rule in missing:
                await client.create_automation(automation(rule, deployment_id))
                log.info("created the Prefect automation %r", rules.automation_name(rule.id or 0))
        self.kept = {rule.id for rule in wanted if rule.id is not None}

    async def _deployment(self) -> UUID:
        """The notify deployment on the work pool, registered once by this process."""
        if self.deployment_id is None:
            from flows.notify import notify

            await self.register(notify, self.work_pool, name=DEPLOYMENT, tags=["notify"])
            async with get_client() as client:
                deployment = await client.read_deployment_by_name(f"{names.NOTIFY}/{DEPLOYMENT}")
            self.deployment_id = deployment.id
        return self.deployment_id


async def _read_automations(client: PrefectClient, page: int = 200) -> list[Automation]:
    """Every automation, page by page (prefect 3.8.8's `read_automations()` sends `limit: null`,
    which its own server refuses with 422)."""
    found: list[Automation] = []
    while True:
        body = {"sort": "NAME_ASC", "limit": page, "offset": len(found)}
        response = await client.request("POST", "/automations/filter", json=body)
        batch = [Automation.model_validate(item) for item in response.json()]
        found += batch
        if len(batch) < page:
            return found


def _load_rules() -> list[NotifyRule]:
    with session_scope() as session:
        return rules.all_rules(session)
