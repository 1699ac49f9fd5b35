"""The automation a rule becomes (deployments/notify_rules.py): what it matches and what it runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from core.errors import Invalid
from core.models import NotifyRule
from core.notify.rules import parse_digest
from deployments.notify_rules import automation


def ids(specs: Any) -> set[str]:
    found = set()
    for spec in specs:
        value = spec["prefect.resource.id"]
        found |= {value} if isinstance(value, str) else set(value)
    return found


def test_a_rule_matches_its_event_in_its_account_partner_and_flow_and_runs_the_notify_deployment() -> None:
    deployment = uuid4()
    rule = NotifyRule(id=7, account_id=3, on="rejected", channel_id=1, partner_id=11, data_flow_id=12)
    made = automation(rule, deployment)
    assert made.name == "tradelane notify rule 7"
    trigger = made.trigger
    assert trigger.expect == {"tradelane.file.rejected"}  # type: ignore[union-attr]
    assert ids(trigger.match_related) == {  # type: ignore[union-attr]
        "tradelane.account.3",
        "tradelane.partner.11",
        "tradelane.data-flow.12",
    }
    assert trigger.within == timedelta(0)  # type: ignore[union-attr]
    [action] = made.actions
    assert action.deployment_id == deployment  # type: ignore[union-attr]
    assert action.schedule_after == timedelta(0)  # type: ignore[union-attr]
    assert action.parameters["rule_id"] == 7  # type: ignore[union-attr]


def test_a_digest_fires_once_per_window_and_runs_at_its_end() -> None:
    rule = NotifyRule(id=8, account_id=1, on="failed", channel_id=1, digest_seconds=900)
    made = automation(rule, uuid4())
    assert made.trigger.within == timedelta(minutes=15)  # type: ignore[union-attr]
    assert made.actions[0].schedule_after == timedelta(minutes=15)  # type: ignore[union-attr]
    assert ids(made.trigger.match_related) == {"tradelane.account.1"}  # type: ignore[union-attr]


def test_digest_windows_are_parsed_and_bounded() -> None:
    assert (parse_digest("10s"), parse_digest("15m"), parse_digest("1h")) == (10, 900, 3600)
    for bad in ("15", "2s", "25h", "1d", "m15"):
        with pytest.raises(Invalid):
            parse_digest(bad)
