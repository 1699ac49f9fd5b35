"""Console B2B connection pages: the account's connections (either side) with the pending ones
counted, the invite form (admins), and per connection: let the sender view our folder or stop it,
revoke. Every change is core's (`connections.invite`, `set_view`, `revoke`): the same role checks
(`connections.manage`, admins) and messages as the CLI and `/api/connections`. The accept page
stays `/connect/accept` (api/web/connect.py) on the same session.

    GET  /console/connections                       list + invite form
    POST /console/connections                       invite: the page again, showing the link once
    POST /console/connections/{id}/allow-view | deny-view | revoke
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.ids import RowId
from api.web.console.deps import ConsoleError, ConsoleFormDep, ConsoleScope, allowed, back, in_database, page
from core.b2b import connections, mail
from core.errors import Invalid, StatusError, said
from core.models import ConnectionState
from core.tenancy import Scope

router = APIRouter(prefix="/console/connections")
LIST = "/console/connections"
ACTIONS = ("allow-view", "deny-view", "revoke")
OPEN = (ConnectionState.pending, ConnectionState.active)


@dataclass(frozen=True)
class Shown:
    id: int
    name: str
    side: str  # send | receive
    other: str
    state: str
    state_text: str
    where: str  # the sender's outbox, or the receiver's destination
    allow_sender_view: bool
    is_open: bool


@dataclass(frozen=True)
class Listing:
    connections: list[Shown]
    pending: int


def _listing(session: Session, scope: Scope) -> Listing:
    shown = []
    for conn in connections.visible_to(session, scope):
        item = connections.view(session, scope, conn)
        where = item.get("outbox") if item["role"] == "send" else item.get("dest")
        shown.append(
            Shown(
                int(str(item["id"])),
                str(item["name"] or "-"),
                str(item["role"]),
                str(item["with"] or "-"),
                str(conn.state),
                str(item["state_text"]),
                str(where or "-"),
                bool(item["allow_sender_view"]),
                conn.state in OPEN,
            )
        )
    return Listing(shown, sum(1 for c in shown if c.state == ConnectionState.pending))


async def _page(request: Request, scope: Scope, status: int = 200, **context: Any) -> Response:
    listing = await in_database(_listing, scope)
    context.setdefault("problem", "")
    context.setdefault("given", {})
    context.setdefault("invited", None)
    return page(request, "console/connections.html", scope, status, listing=listing, **context)


@router.get("")
async def list_connections(request: Request, scope: ConsoleScope) -> Response:
    return await _page(request, scope)


@dataclass(frozen=True)
class Invited:
    name: str
    link: str
    mailed: str  # what happened to the e-mail, in the CLI's words


@router.post("")
async def invite(request: Request, fields: ConsoleFormDep, scope: ConsoleScope) -> Response:
    allowed(scope, "connections.manage")
    given = {k: v for k, v in fields.items() if k != "csrf"}
    direction = fields.get("direction", "")

    def work(session: Session) -> tuple[str, mail.Invitation]:
        if direction not in ("send", "receive"):
            raise Invalid("direction: send (we send them files) or receive (they send us files)")
        invitation = connections.invite(
            session,
            scope,
            name=fields.get("name", "").strip(),
            direction="send" if direction == "send" else "receive",
            email=fields.get("email", "").strip(),
            outbox=fields.get("outbox", "").strip() or None,
            dest=fields.get("dest", "").strip() or None,
            expires=connections.parse_expiry(fields.get("expires", "").strip() or "7d"),
        )
        return invitation.link, connections.invitation_mail(session, invitation)

    try:
        link, letter = await in_database(work)  # committed before any e-mail goes out
    except StatusError as error:
        return await _page(request, scope, error.status, problem=said(error), given=given)
    outcome = await run_in_threadpool(mail.send_invitation, letter)
    invited = Invited(given.get("name", ""), link, outcome.sentence(given.get("email", "")))
    return await _page(request, scope, invited=invited)


@router.post("/{connection_id}/{action}")
async def change(
    request: Request, _form: ConsoleFormDep, scope: ConsoleScope, connection_id: RowId, action: str
) -> Response:
    if action not in ACTIONS:
        raise ConsoleError(404, f"no connection action {action!r}")
    allowed(scope, "connections.manage")

    def work(session: Session) -> str:
        if action == "revoke":
            conn = connections.revoke(session, scope, connection_id)
        else:
            conn = connections.set_view(session, scope, connection_id, action == "allow-view")
        return connections.side_name(conn, scope.account_id) or str(connection_id)

    try:
        name = await in_database(work)
    except StatusError as error:
        return await _page(request, scope, error.status, problem=said(error))
    return back(LIST, "saved", name)
