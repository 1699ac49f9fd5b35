"""Console transfer pages: the history with filters and keyset pages, each row linked to its
Prefect flow run, and Replay.

    GET  /console/transfers?state=&flow=&partner=&dest=&since=&until=&run=&before=
    GET  /console/transfers/{id}            one transfer: file, SHA-256, where it went, the answer,
                                            the error in full, its replays, its Prefect run
    POST /console/transfers/{id}/replay     (operators and admins; final states)

`run` is what each flow run's link artifact points at (flows/outcomes.py): that run's files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import Response

from api.ids import MAX_ROW_ID, RowId
from api.web.console.deps import (
    ConsoleError,
    ConsoleFormDep,
    ConsoleScope,
    allowed,
    back,
    in_database,
    page,
    parse_time,
)
from core import transfers
from core.endpoints import rows as endpoint_rows
from core.errors import StatusError, said
from core.links import prefect_run_url
from core.models import DataFlow, Endpoint, Partner, Transfer, TransferState
from core.roles import may
from core.tenancy import Scope

router = APIRouter(prefix="/console/transfers")
LIST = "/console/transfers"
FILTERS = ("state", "flow", "partner", "dest", "since", "until", "run")
FINAL = {TransferState.delivered.value, TransferState.failed.value, TransferState.rejected.value}
ERROR_CHARS = 200


@dataclass(frozen=True)
class Row:
    view: transfers.TransferView
    run_url: str | None
    error: str
    may_replay: bool


@dataclass(frozen=True)
class Choices:
    """What the filter's selects offer: the account's data flows, partners and destinations."""

    flows: list[str]
    partners: list[str]
    dests: list[str]


def _history(
    session: Session, scope: Scope, wanted: transfers.TransferFilter, before: int | None
) -> tuple[transfers.Page, Choices]:
    found = transfers.page(
        session, scope, wanted, before=before, scrubber=endpoint_rows.scrubber(session, scope)
    )
    mine = scope.account_id
    choices = Choices(
        sorted(session.exec(select(DataFlow.name).where(DataFlow.account_id == mine))),
        sorted(session.exec(select(Partner.name).where(Partner.account_id == mine))),
        sorted(session.exec(select(Endpoint.name).where(Endpoint.account_id == mine))),
    )
    return found, choices


# The "last hour / day / week" links: `since` that long ago, as the filter's datetime-local field takes it.
WINDOWS = (
    ("last hour", timedelta(hours=1)),
    ("last 24 h", timedelta(days=1)),
    ("last 7 days", timedelta(days=7)),
)


def _windows(kept: dict[str, str]) -> list[tuple[str, str]]:
    now = datetime.now(UTC)
    others = {k: v for k, v in kept.items() if k not in ("since", "until")}
    return [
        (label, f"{LIST}?{urlencode({**others, 'since': (now - span).strftime('%Y-%m-%dT%H:%M')})}")
        for label, span in WINDOWS
    ]


@router.get("")
async def list_transfers(
    request: Request, scope: ConsoleScope, before: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None
) -> Response:
    given = {name: request.query_params.get(name, "")[:200] for name in FILTERS}
    wanted = transfers.TransferFilter(
        state=given["state"] or None,
        flow=given["flow"] or None,
        partner=given["partner"] or None,
        dest=given["dest"] or None,
        since=parse_time(given["since"], "since"),
        until=parse_time(given["until"], "until"),
        run=given["run"] or None,
    )
    try:
        found, choices = await in_database(_history, scope, wanted, before)
    except StatusError as error:
        raise ConsoleError(error.status, said(error)) from None
    may_replay = may(scope, "transfers.replay")
    rows = [
        Row(
            view,
            prefect_run_url(view.flow_run_id),
            (view.error or "")[:ERROR_CHARS] + ("…" if len(view.error or "") > ERROR_CHARS else ""),
            may_replay and view.state in FINAL,
        )
        for view in found.rows
    ]
    kept = {k: v for k, v in given.items() if v}
    older = f"{LIST}?{urlencode({**kept, 'before': found.next_before})}" if found.next_before else None
    return page(
        request,
        "console/transfers.html",
        scope,
        rows=rows,
        given=given,
        states=[state.value for state in TransferState],
        choices=choices,
        windows=_windows(kept),
        newest=f"{LIST}?{urlencode(kept)}" if before else None,
        older=older,
    )


def _one(session: Session, scope: Scope, transfer_id: int) -> tuple[transfers.TransferView, list[int]]:
    """The transfer as the history shows it (secrets hidden) and the ids of its replays."""
    found = transfers.page(
        session, scope, before=transfer_id + 1, limit=1, scrubber=endpoint_rows.scrubber(session, scope)
    )
    if not found.rows or found.rows[0].id != transfer_id:
        raise ConsoleError(404, f"no transfer {transfer_id}")
    replays = session.exec(
        select(Transfer.id).where(Transfer.replay_of == transfer_id).order_by(col(Transfer.id))
    ).all()
    mine = [t for t in replays if t is not None and transfers.get(session, scope, t) is not None]
    return found.rows[0], mine


@router.get("/{transfer_id}")
async def show_transfer(request: Request, scope: ConsoleScope, transfer_id: RowId) -> Response:
    view, replays = await in_database(_one, scope, transfer_id)
    return page(
        request,
        "console/transfer.html",
        scope,
        view=view,
        replays=replays,
        run_url=prefect_run_url(view.flow_run_id),
        answer=json.dumps(view.destination_answer, indent=2, sort_keys=True)
        if view.destination_answer
        else "",
        may_replay=may(scope, "transfers.replay") and view.state in FINAL,
    )


@router.post("/{transfer_id}/replay")
async def replay_transfer(
    request: Request, _form: ConsoleFormDep, scope: ConsoleScope, transfer_id: RowId
) -> Response:
    allowed(scope, "transfers.replay")
    try:
        again = await in_database(transfers.replay, scope, transfer_id)
    except StatusError as error:
        raise ConsoleError(error.status, said(error)) from None
    return back(f"{LIST}/{again.id}", "replayed", str(again.id))
