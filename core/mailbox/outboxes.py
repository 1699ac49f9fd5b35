"""The account's B2B outboxes, as its users' homes show them: `b2b/<outbox>/`.

The one place the doors (REST, SFTP, FTP) ask which outboxes an account has. Connections (issue 12,
stage 3: `core/b2b/`) fill it from their table; until then an account has none, and `b2b/` is an
empty folder.
"""

from __future__ import annotations

from sqlmodel import Session

from core.tenancy import Scope


def outbox_names(session: Session, scope: Scope) -> list[str]:
    """The names of the account's outboxes (pending, active and revoked connections it sends on),
    sorted; each is a folder `b2b/<name>/` in its users' homes."""
    del session, scope  # the connections stream reads its `connection` table here
    return []
