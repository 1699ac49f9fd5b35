"""The console's first page (`GET /console`): the account's transfers counted by state (each a link
to the transfers page filtered to it), the B2B invitations still pending (a badge in the nav too),
and the way to the Prefect UI."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from api.web.console.badges import pending_invitations
from api.web.console.deps import ConsoleScope, in_database, page
from core import transfers
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
