"""/api/admin/transfers and /api/admin/audit: the run history and the audit trail, page by page.

Pages are keyset pages (`before` = the previous page's `next_before`): a page costs the same however
deep it is, new transfers never shift it, and no count is made.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.admin.deps import REFUSALS, AdminScope, BoundedRoute, changing, needs
from api.admin.schemas import (
    AuditFilter,
    AuditPage,
    AuditPublic,
    TransferFilter,
    TransferPage,
    TransferPublic,
)
from api.deps import SessionDep, SettingsDep
from api.ids import RowId
from core import audit
from core import transfers as history
from core.endpoints import rows as endpoint_rows
from core.tenancy import Scope
from core.transfers import NoSuchTransfer

router = APIRouter(tags=["admin: transfers"], route_class=BoundedRoute)
audit_router = APIRouter(tags=["admin: audit"], route_class=BoundedRoute)

Replayer = Annotated[Scope, needs("transfers.replay")]


@router.get("/transfers", responses=REFUSALS)
def list_transfers(
    wanted: Annotated[TransferFilter, Query()], scope: AdminScope, session: SessionDep, settings: SettingsDep
) -> TransferPage:
    """Transfers newest first, filtered as `tradelane transfers` filters them (state, data flow,
    sending partner, destination endpoint, received `since`/`until`) and by Prefect flow run
    (`run`); errors and answers scrubbed of every endpoint secret. `next_before` fetches the older page."""
    found = history.page(
        session,
        scope,
        history.TransferFilter(
            state=wanted.state,
            flow=wanted.flow,
            partner=wanted.partner,
            dest=wanted.dest,
            since=wanted.since,
            until=wanted.until,
            run=wanted.run,
        ),
        before=wanted.before,
        limit=wanted.limit,
        scrubber=endpoint_rows.scrubber(session, scope),
    )
    ui = settings.prefect_links_url
    return TransferPage(
        transfers=[TransferPublic.of(v, ui) for v in found.rows], next_before=found.next_before
    )


def _one(session: SessionDep, scope: Scope, transfer_id: int, ui: str | None) -> TransferPublic:
    # The newest transfer at or below the id is the one asked for, or it is not this account's.
    found = history.page(
        session, scope, before=transfer_id + 1, limit=1, scrubber=endpoint_rows.scrubber(session, scope)
    )
    if not found.rows or found.rows[0].id != transfer_id:
        raise NoSuchTransfer(f"no transfer {transfer_id}")
    return TransferPublic.of(found.rows[0], ui)


@router.get("/transfers/{transfer_id}", responses=REFUSALS)
def show_transfer(
    transfer_id: RowId, scope: AdminScope, session: SessionDep, settings: SettingsDep
) -> TransferPublic:
    """One transfer: file, SHA-256, size, partner, flow, destination, answer, error, attempts, the
    transfer it replays, and its Prefect run link."""
    return _one(session, scope, transfer_id, settings.prefect_links_url)


@router.post("/transfers/{transfer_id}/replay", **changing("transfers.replay"))
def replay(transfer_id: RowId, scope: Replayer, session: SessionDep, settings: SettingsDep) -> TransferPublic:
    """Carry a finished transfer's file again through the same data flow: the answer is the new
    transfer (pending); a waiting one is tried now instead (the same transfer)."""
    copy = history.replay(session, scope, transfer_id)
    session.flush()
    assert copy.id is not None
    return _one(session, scope, copy.id, settings.prefect_links_url)


@audit_router.get("/audit", responses=REFUSALS)
def list_events(wanted: Annotated[AuditFilter, Query()], scope: AdminScope, session: SessionDep) -> AuditPage:
    """The account's audit trail, newest first: who (actor), did what (action, target, detail), when
    (UTC) and from where (`remote_addr`). `next_before` fetches the older page."""
    events = audit.events(
        session,
        scope,
        partner=wanted.partner,
        action=wanted.action,
        since=wanted.since,
        until=wanted.until,
        before=wanted.before,
        limit=wanted.limit + 1,
    )
    shown = events[: wanted.limit]
    more = len(events) > wanted.limit
    return AuditPage(events=[AuditPublic.of(e) for e in shown], next_before=shown[-1].id if more else None)
