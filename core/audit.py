"""Audit events: who did what, when. Written in the caller's session so they commit together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, or_, select

from core.models import AuditEvent, utcnow
from core.tenancy import Scope

# The address a front end's request came from, for the events the core functions it calls record
# (they take no address: the CLI has none). Set per request by `requests_from`.
_request_addr: ContextVar[str | None] = ContextVar("audit_request_addr", default=None)


@contextmanager
def requests_from(remote_addr: str | None) -> Iterator[None]:
    """Events recorded inside (in this context, or a worker thread started from it) say they came
    from `remote_addr` unless they name their own."""
    token = _request_addr.set(remote_addr)
    try:
        yield
    finally:
        _request_addr.reset(token)


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
    # A Core insert in the caller's transaction: building and flushing an ORM object cost about
    # three times the row's own insert, and one is written for every file that arrives.
    session.execute(
        _INSERT,
        {
            "account_id": account_id,
            "actor": actor,
            "action": action,
            "target": target,
            "remote_addr": remote_addr or _request_addr.get(),
            "detail": detail,
            "at": utcnow(),
        },
    )


_INSERT = insert(AuditEvent.__table__)  # type: ignore[attr-defined]


def events(
    session: Session,
    scope: Scope,
    *,
    partner: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """The newest events first. `partner` matches what the partner did and what was done to it;
    `action` matches an action or its family ("login" also finds "login.failed"); `before` an
    event id gives the page older than it (keyset: new events never shift a page).

    Only the scope's account's events; instance events (no account: a failed login under an
    unknown name, an address ban) are the instance operator's, shown in every account to it alone."""
    mine = col(AuditEvent.account_id) == scope.account_id
    if scope.role == "instance":
        mine = or_(mine, col(AuditEvent.account_id).is_(None))
    query = select(AuditEvent).where(mine).order_by(col(AuditEvent.id).desc()).limit(limit)
    if partner:
        query = query.where(or_(AuditEvent.actor == f"partner:{partner}", AuditEvent.target == partner))
    if action:
        query = query.where(or_(AuditEvent.action == action, col(AuditEvent.action).startswith(f"{action}.")))
    if before is not None:
        query = query.where(col(AuditEvent.id) < before)
    if since is not None:
        query = query.where(col(AuditEvent.at) >= since)
    if until is not None:
        query = query.where(col(AuditEvent.at) < until)
    return list(session.exec(query))
