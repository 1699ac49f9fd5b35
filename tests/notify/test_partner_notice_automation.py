"""The automation that tells partners of files waiting in download/ (deployments/partner_notices.py):
what it matches (delivered events naming a recipient, one window per recipient partner) and runs,
and, against a real Prefect server (the session's test server), that a changed window setting is
applied to the automation made before, and an unchanged one leaves it alone."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger

from deployments.notify_rules import _read_automations
from deployments.partner_notices import DOWNLOAD_NAME, _keep_downloads, download_automation


def test_it_fires_once_per_window_per_recipient_partner_and_runs_at_the_windows_end() -> None:
    deployment = uuid4()
    made = download_automation(deployment, 300)
    assert made.name == DOWNLOAD_NAME
    trigger = made.trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.expect == {"tradelane.file.delivered"}
    assert dict(trigger.match_related.items()) == {"prefect.resource.role": ["recipient"]}  # type: ignore[union-attr]
    assert trigger.for_each == {"related:recipient:prefect.resource.id"}
    assert trigger.within == timedelta(minutes=5)
    [action] = made.actions
    assert action.deployment_id == deployment  # type: ignore[union-attr]
    assert action.schedule_after == timedelta(minutes=5)  # type: ignore[union-attr]
    assert action.parameters["digest_seconds"] == 300  # type: ignore[union-attr]


@pytest.mark.usefixtures("prefect_server")
async def test_a_changed_window_setting_is_applied_to_the_automation() -> None:
    deployment = uuid4()

    async def kept() -> Automation | None:
        async with get_client() as client:
            found = [a for a in await _read_automations(client) if a.name == DOWNLOAD_NAME]
        return found[0] if found else None

    async def keep(digest: int) -> Automation:
        async with get_client() as client:
            await _keep_downloads(client, await kept(), download_automation(deployment, digest))
        found = await kept()
        assert found is not None and isinstance(found.trigger, EventTrigger)
        return found

    made = await keep(60)
    assert made.trigger.within == timedelta(seconds=60)  # type: ignore[union-attr]
    edited = made.model_copy(update={"description": "edited in the UI"})
    async with get_client() as client:
        await client.update_automation(
            made.id, AutomationCore(**edited.model_dump(exclude={"id", "owner_resource"}))
        )
    assert (await keep(60)).description == "edited in the UI"  # the same window: left as edited
    changed = await keep(600)  # another window: the automation's (and its run's) follow the setting
    assert changed.trigger.within == timedelta(seconds=600)  # type: ignore[union-attr]
    assert changed.actions[0].parameters["digest_seconds"] == 600  # type: ignore[union-attr]


def test_the_window_setting_is_bounded_like_a_rules_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from core.config import Settings

    assert Settings().partner_download_digest_seconds == 300
    for bad in ("4", "86401", "5m"):
        monkeypatch.setenv("TRADELANE_PARTNER_DOWNLOAD_DIGEST_SECONDS", bad)
        with pytest.raises(ValidationError, match="partner_download_digest_seconds"):
            Settings()
    monkeypatch.setenv("TRADELANE_PARTNER_DOWNLOAD_DIGEST_SECONDS", "10")
    assert Settings().partner_download_digest_seconds == 10
