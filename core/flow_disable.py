"""Turning data flows off when what they read from or write to goes away (a partner or an endpoint
removed): one place, below both, so neither needs the whole data-flow module."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from core import audit
from core.models import DataFlow


def disable_all(
    session: Session, flows: Sequence[DataFlow], *, reason: str, actor: str, now: datetime
) -> list[str]:
    """Disable data flows whose source or destination went away (each audited once, with `reason`,
    if it was enabled); the names of them all."""
    for flow in flows:
        if flow.enabled:
            flow.enabled = False
            flow.updated_at = now
            session.add(flow)
            audit.record(
                session,
                "flow.disable",
                actor=actor,
                account_id=flow.account_id,
                target=flow.name,
                reason=reason,
            )
    return [flow.name for flow in flows]
