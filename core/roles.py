"""What each role may change: one table, read by core's services and by every front end.

Reading (lists, details, transfers, audit, settings without secrets) is every account user's.
Changing is an *action* named here; `Scope.require_to(action)` refuses a login whose role is not
listed for it (403 on every surface, the same words), and a front end asks `may(scope, action)` to
decide which buttons exist. The CLI acts as the instance operator (`instance`), who may do all;
a partner, a flow (`system`) or a peer may do none of these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from core.tenancy import Role, Scope

Action = Literal[
    "partners.change",
    "partners.purge",
    "endpoints.change",
    "endpoints.test",
    "flows.change",
    "transfers.replay",
    "users.change",
    "connections.manage",
    "connections.send",
]

# action -> the account users' roles that may do it (the instance operator may do all).
ACTIONS: Final[dict[Action, frozenset[Role]]] = {
    "partners.change": frozenset({"admin", "operator"}),
    "partners.purge": frozenset({"admin"}),
    "endpoints.change": frozenset({"admin", "operator"}),
    "endpoints.test": frozenset({"admin", "operator"}),
    "flows.change": frozenset({"admin", "operator"}),
    "transfers.replay": frozenset({"admin", "operator"}),
    "users.change": frozenset({"admin"}),
    "connections.manage": frozenset({"admin"}),
    "connections.send": frozenset({"admin", "operator"}),
}


def roles_for(action: Action) -> tuple[Role, ...]:
    """The roles that may do `action`, most powerful first (for messages)."""
    order: tuple[Role, ...] = ("admin", "operator", "read-only")
    return tuple(role for role in order if role in ACTIONS[action])


def may(scope: Scope, action: Action) -> bool:
    """Whether the scope's login may do `action`."""
    return scope.role == "instance" or scope.role in ACTIONS[action]
