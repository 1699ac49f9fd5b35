"""The account's B2B outboxes, as its users' homes show them: `b2b/<outbox>/`.

The one place the doors (REST, SFTP, FTP) ask which outboxes an account has and what may be done in
each. An outbox is the sending side of a connection (core/b2b/connections.py) of the account:

* pending  write (files are taken in and held until the receiver accepts);
* active   write (each file is carried at once through the receiver's landing flow);
* revoked  shown, but refuses writes with the revoke's date (core/b2b/outbox.py says it);

and, whatever the state, `list` only when the receiver allows the sender to view its folder (the
listing is the receiver's folder, never a file of the sender's: core/b2b/connections.py
`receiver_listing`). Declined and expired connections have no outbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from core.mailbox.access import Action
from core.models import Connection, ConnectionState
from core.tenancy import Scope

SHOWN_STATES = (ConnectionState.pending, ConnectionState.active, ConnectionState.revoked)
WRITABLE_STATES = (ConnectionState.pending, ConnectionState.active)
WRITERS = ("admin", "operator", "instance")


@dataclass(frozen=True)
class Outbox:
    name: str
    connection_id: int
    state: str
    allow_view: bool

    def actions(self, scope: Scope) -> frozenset[Action]:
        """What `scope`'s login may do in `b2b/<name>/`: never read back, never delete; a read-only
        user never writes."""
        actions = set()
        if self.state in WRITABLE_STATES and scope.role in WRITERS:
            actions.add(Action.WRITE)
        if self.allow_view:
            actions.add(Action.LIST)
        return frozenset(actions)


def outboxes(session: Session, scope: Scope) -> list[Outbox]:
    """The account's outboxes (pending, active and revoked connections it sends on), by name."""
    rows = session.exec(
        select(Connection).where(
            Connection.sender_account_id == scope.account_id,
            col(Connection.state).in_(SHOWN_STATES),
            col(Connection.outbox_name).is_not(None),
        )
    ).all()
    found = [
        Outbox(row.outbox_name, row.id, str(row.state), row.allow_sender_view)
        for row in rows
        if row.outbox_name is not None and row.id is not None
    ]
    return sorted(found, key=lambda o: o.name)


def outbox_named(session: Session, scope: Scope, name: str) -> Outbox | None:
    return next((o for o in outboxes(session, scope) if o.name == name), None)


def outbox_names(session: Session, scope: Scope) -> list[str]:
    """The names of the account's outboxes, sorted; each is a folder `b2b/<name>/` in its users' homes."""
    return [o.name for o in outboxes(session, scope)]
