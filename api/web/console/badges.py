"""Counts the console's nav shows on every page (one cheap query each)."""

from __future__ import annotations

from sqlmodel import Session, col, func, or_, select

from core.models import Connection, ConnectionState, utcnow
from core.tenancy import Scope


def pending_invitations(session: Session, scope: Scope) -> int:
    """The account's invitations not yet accepted nor run out (the nav's badge: one count query)."""
    query = (
        select(func.count())
        .select_from(Connection)
        .where(
            Connection.state == ConnectionState.pending,
            or_(
                Connection.sender_account_id == scope.account_id,
                Connection.receiver_account_id == scope.account_id,
            ),
            or_(col(Connection.token_expires_at).is_(None), col(Connection.token_expires_at) >= utcnow()),
        )
    )
    return int(session.exec(query).one())
