"""The sender's push data flow of a cross-instance connection (DESIGN-12 §5.5).

# replaced by the peerpush stream at merge
Until then there is no flow: activation keeps the sender's outbox files held (None).
"""

from __future__ import annotations

from sqlmodel import Session

from core.models import Connection, DataFlow


def create_flow(session: Session, conn: Connection) -> DataFlow | None:
    """A's hidden data flow `b2b:<id>` into the peer endpoint; None until the peerpush stream lands."""
    return None
