"""The console's first page (`GET /console`): the account's transfers counted by state (each a link
to the transfers page filtered to it), the B2B invitations still pending (a badge in the nav too),
and the way to the Prefect UI; and "log out everywhere" for the user's own sessions.

    GET  /console                      the overview
    POST /console/logout-everywhere    ends every web session of this user (any role: it is its own)
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.web import auth, security
from api.web.console.badges import pending_invitations
from api.web.console.deps import ConsoleFormDep, ConsoleScope, in_database, page
from core import transfers, web_sessions
from core.models import TransferState
from core.tenancy import Scope

router = APIRouter()


@dataclass(frozen=True)
class Overview:
    counts: list[tuple[str, int]]  # every state, in the order a transfer goes through them
    total: int
    pending_invitations: int


def overview(session: Session, scope: Scope) -> Overview:
    counted = transfers.counts(session, scope)
    states = [(state.value, counted.get(state.value, 0)) for state in TransferState]
    return Overview(states, sum(counted.values()), pending_invitations(session, scope))


@router.get("/console")
async def console_home(request: Request, scope: ConsoleScope) -> Response:
    found = await in_database(overview, scope)
    return page(request, "console/overview.html", scope, overview=found)


@router.post("/console/logout-everywhere")
async def log_out_everywhere(request: Request, _form: ConsoleFormDep, found: auth.WebUserDep) -> Response:
    """End every session of this login (other browsers, a forgotten one), this one included."""

    def end_all(session: Session) -> int:
        return web_sessions.end_all(session, found.kind, found.login.partner_id, "logout everywhere")

    await in_database(end_all)
    response = RedirectResponse(f"{auth.LOGIN}?done=logout", status_code=303)
    auth.clear_session_cookie(response)
    security.set_csrf_cookie(response, security.new_csrf_cookie(), request)
    return response
