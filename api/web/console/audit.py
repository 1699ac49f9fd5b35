"""Console audit page: who did what, when, from where; newest first, keyset pages.

GET /console/audit?partner=&action=&since=&until=&before=
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from api.web.console.deps import ConsoleScope, in_database, page, parse_time
from core import audit

router = APIRouter(prefix="/console/audit")
LIST = "/console/audit"
PAGE = 100
FILTERS = ("partner", "action", "since", "until")


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    actor: str
    action: str
    target: str
    detail: str
    remote_addr: str


@router.get("")
async def list_events(request: Request, scope: ConsoleScope, before: int | None = None) -> Response:
    given = {name: request.query_params.get(name, "")[:200] for name in FILTERS}
    since, until = parse_time(given["since"], "since"), parse_time(given["until"], "until")
    found = await in_database(
        lambda session: audit.events(
            session,
            scope,
            partner=given["partner"] or None,
            action=given["action"] or None,
            since=since,
            until=until,
            before=before,
            limit=PAGE,
        )
    )
    events = [
        Event(
            e.id or 0,
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.action,
            e.target or "",
            json.dumps(e.detail, sort_keys=True, default=str) if e.detail else "",
            e.remote_addr or "",
        )
        for e in found
    ]
    kept = {k: v for k, v in given.items() if v}
    older = f"{LIST}?{urlencode({**kept, 'before': events[-1].id})}" if len(events) == PAGE else None
    newest = f"{LIST}?{urlencode(kept)}" if before else None
    return page(request, "console/audit.html", scope, events=events, given=given, older=older, newest=newest)
