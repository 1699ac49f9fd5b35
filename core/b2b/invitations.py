"""Taking an invitation, from whichever instance issued it: the one entry for accept and decline.

A bare token, or a link to this instance's public URL, is ours (`connections.accept_here`,
`decline_here`); a link to another instance goes through the cross-instance handshake
(`core/b2b/handshake.py`), which calls that instance. The CLI, the REST API and the accept page
call these two functions and never choose a branch themselves.
"""

from __future__ import annotations

from sqlmodel import Session

from core.b2b import connections, handshake
from core.b2b.caller import Caller
from core.models import Connection


def accept(
    session: Session,
    caller: Caller,
    token_or_link: str,
    *,
    name: str,
    dest: str | None = None,
    outbox: str | None = None,
) -> Connection:
    """Accept the invitation the token or link names, as `caller`'s account: active on return."""
    token, remote = connections.token_and_base(token_or_link)
    if remote is None:
        return connections.accept_here(session, caller, token, name=name, dest=dest, outbox=outbox)
    caller.require_to("connections.manage")
    return handshake.accept_across(session, caller, remote, token, name=name, dest=dest, outbox=outbox)


def decline(session: Session, token_or_link: str, actor: str = "cli") -> Connection | None:
    """Say no to the invitation; a link to another instance is declined there and nothing is stored
    here (None)."""
    token, remote = connections.token_and_base(token_or_link)
    if remote is None:
        return connections.decline_here(session, token, actor=actor)
    handshake.decline_across(remote, token)
    return None
