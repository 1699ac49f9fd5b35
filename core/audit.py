"""Audit events: who did what, when. Written in the caller's session so they commit together."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from core.models import AuditEvent


def record(
    session: Session,
    action: str,
    *,
    actor: str,
    account_id: int | None = None,
    target: str | None = None,
    remote_addr: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEvent(
            account_id=account_id,
            actor=actor,
            action=action,
            target=target,
            remote_addr=remote_addr,
            detail=detail,
        )
    )
