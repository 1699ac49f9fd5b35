"""`tradelane notify on WHAT …`: rules, stored here and mirrored as Prefect automations
(deployments/notify_rules.py) that run the notify deployment (flows/notify.py) when their event
comes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from core import dataflows, partners
from core.errors import Invalid, NotFound
from core.models import DataFlow, NotifyChannel, NotifyRule, Partner
from core.notify import channels
from core.notify.notices import WHATS
from core.tenancy import Scope

DIGEST_UNITS = {"s": 1, "m": 60, "h": 3600}
# A digest window: at least 5 s (less is no digest), at most a day.
MIN_DIGEST_SECONDS, MAX_DIGEST_SECONDS = 5, 86_400


class NoSuchRule(NotFound):
    pass


def parse_digest(text: str) -> int:
    """'15m', '10s', '1h' → seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smh])\s*", text)
    if match is None:
        raise Invalid(f"--digest is a number and s, m or h (10s, 15m, 1h), not {text!r}")
    seconds = int(match[1]) * DIGEST_UNITS[match[2]]
    if not MIN_DIGEST_SECONDS <= seconds <= MAX_DIGEST_SECONDS:
        raise Invalid(f"--digest is between {MIN_DIGEST_SECONDS}s and 24h")
    return seconds


def add(
    session: Session,
    scope: Scope,
    on: str,
    channel: str,
    *,
    partner: str | None = None,
    flow: str | None = None,
    digest: str | None = None,
) -> NotifyRule:
    scope.require_to("endpoints.change")
    if on not in WHATS:
        raise Invalid(f"notify on one of {', '.join(WHATS)}, not {on!r}")
    target = channels.require(session, scope, channel)
    partner_row = partners.require(session, scope, partner) if partner is not None else None
    flow_row = dataflows.require(session, scope, flow) if flow is not None else None
    rule = NotifyRule(
        account_id=scope.account_id,
        on=on,
        channel_id=target.id or 0,
        partner_id=partner_row.id if partner_row else None,
        data_flow_id=flow_row.id if flow_row else None,
        digest_seconds=parse_digest(digest) if digest is not None else None,
    )
    session.add(rule)
    session.flush()
    return rule


def remove(session: Session, scope: Scope, rule_id: int) -> None:
    scope.require_to("endpoints.change")
    rule = session.get(NotifyRule, rule_id)
    if rule is None or rule.account_id != scope.account_id:
        raise NoSuchRule(f"no notification rule {rule_id}")
    session.delete(rule)


@dataclass(frozen=True)
class RuleView:
    id: int
    on: str
    channel: str
    partner: str | None
    flow: str | None
    digest_seconds: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "on": self.on,
            "channel": self.channel,
            "partner": self.partner,
            "flow": self.flow,
            "digest_seconds": self.digest_seconds,
            "automation": automation_name(self.id),
        }


def automation_name(rule_id: int) -> str:
    """The Prefect automation that keeps rule `rule_id` (one definition: the mirror finds it by it)."""
    return f"tradelane notify rule {rule_id}"


def listed(session: Session, scope: Scope | None = None) -> list[RuleView]:
    """An account's rules (every account's: `scope` None, for the mirror)."""
    query = (
        select(NotifyRule, NotifyChannel.name, Partner.name, DataFlow.name)
        .join(NotifyChannel, col(NotifyRule.channel_id) == NotifyChannel.id)
        .join(Partner, col(NotifyRule.partner_id) == Partner.id, isouter=True)
        .join(DataFlow, col(NotifyRule.data_flow_id) == DataFlow.id, isouter=True)
    )
    if scope is not None:
        query = query.where(NotifyRule.account_id == scope.account_id)
    rows = session.exec(query.order_by(col(NotifyRule.id))).all()
    return [
        RuleView(rule.id or 0, rule.on, channel, partner, flow, rule.digest_seconds)
        for rule, channel, partner, flow in rows
    ]


def all_rules(session: Session) -> list[NotifyRule]:
    return list(session.exec(select(NotifyRule).order_by(col(NotifyRule.id))))
