"""B2B connections over REST, for account users: list, show, allow-view, send, files, transfers, revoke.

The same operations as `tradelane connect` (core/b2b/connections.py): one message source, a
refusal answers its status with `{"message": ...}`. Partners never manage connections.

Who calls comes from `get_caller`: an account user's scope (its own account, its role); a partner
login is refused with 403.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api import errors
from api.bodies import BoundedBodyRoute
from api.deps import CurrentUser, ScopeDep, SessionDep
from api.ids import RowId
from api.upload import filename_from, receive, too_large
from core import intake
from core.b2b import connections, history, invitations, mail, outbox
from core.b2b.caller import Caller
from core.config import get_settings
from core.db import session_scope

router = APIRouter(prefix="/connections", tags=["connections"], route_class=BoundedBodyRoute)

REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"description": "not this side's to do, or a partner login"},
    404: {"description": "no such connection in this account"},
    409: {"description": "the connection's state does not allow it"},
}


def get_caller(user: CurrentUser, scope: ScopeDep) -> Caller:
    """The account user calling, as a connection `Caller` (a partner login is refused by CurrentUser)."""
    return scope


CallerDep = Annotated[Caller, Depends(get_caller)]


class ViewChange(BaseModel):
    allow_sender_view: bool


class InviteRequest(BaseModel):
    email: str
    name: str
    direction: Literal["send", "receive"]
    outbox: str | None = None
    dest: str | None = None  # ENDPOINT[:DIR] of the caller's account, for direction "receive"
    expires: str = "7d"  # 30m, 48h, 7d … at most 90d


class AcceptRequest(BaseModel):
    token: str  # the token, or the whole link
    name: str
    dest: str | None = None
    outbox: str | None = None


class DeclineRequest(BaseModel):
    token: str


@router.post("", status_code=201, responses=REFUSALS)
def invite(request: InviteRequest, caller: CallerDep, session: SessionDep) -> dict[str, Any]:
    """Invite another account; the answer carries the link (shown once: only its hash is kept)."""
    invitation = connections.invite(
        session,
        caller,
        name=request.name,
        direction=request.direction,
        email=request.email,
        outbox=request.outbox,
        dest=request.dest,
        expires=connections.parse_expiry(request.expires),
    )
    answer = connections.view(session, caller, invitation.connection)
    conn = invitation.connection
    answer.update(uid=conn.uid, direction=conn.direction, link=invitation.link)
    letter = connections.invitation_mail(session, invitation)
    # The e-mail goes out once the connection is committed (a failed commit sends no invitation),
    # at once and never queued (queueing would store the clear token).
    session.commit()
    answer.update(mail.send_invitation(letter).fields())
    return answer


@router.post("/accept", responses=REFUSALS)
def accept(request: AcceptRequest, caller: CallerDep, session: SessionDep) -> dict[str, Any]:
    """Accept an invitation: of another account here, or (a link to another instance) across, through
    the signed handshake with that instance; the connection becomes active on both sides."""
    conn = invitations.accept(
        session, caller, request.token, name=request.name, dest=request.dest, outbox=request.outbox
    )
    return connections.view(session, caller, conn)


@router.post("/decline", responses=REFUSALS)
def decline(request: DeclineRequest, caller: CallerDep, session: SessionDep) -> dict[str, Any]:
    """Decline an invitation (the token is the authority)."""
    conn = invitations.decline(session, request.token, actor=caller.actor)
    # A link to another instance is declined there: nothing is stored here (no id).
    return {"id": conn.id if conn else None, "state": conn.state if conn else "declined"}


@router.get("", responses=REFUSALS)
def list_connections(caller: CallerDep, session: SessionDep) -> list[dict[str, Any]]:
    """The account's connections, each as this side sees it."""
    return [connections.view(session, caller, conn) for conn in connections.visible_to(session, caller)]


@router.get("/{connection_id}", responses=REFUSALS)
def show_connection(connection_id: RowId, caller: CallerDep, session: SessionDep) -> dict[str, Any]:
    """One connection; where files land only in the receiving side's answer."""
    return connections.view(session, caller, connections.require(session, caller, connection_id))


@router.patch("/{connection_id}", responses=REFUSALS)
def change_view(
    connection_id: RowId, change: ViewChange, caller: CallerDep, session: SessionDep
) -> dict[str, Any]:
    """The receiving side lets the sender list its folder (or stops it)."""
    conn = connections.set_view(session, caller, connection_id, change.allow_sender_view)
    return connections.view(session, caller, conn)


@router.post("/{connection_id}/revoke", responses=REFUSALS)
def revoke_connection(connection_id: RowId, caller: CallerDep, session: SessionDep) -> dict[str, Any]:
    """End the connection (either side's admin)."""
    conn = connections.revoke(session, caller, connection_id)
    return connections.view(session, caller, conn)


@router.get("/{connection_id}/files", responses=REFUSALS)
def list_files(connection_id: RowId, caller: CallerDep, session: SessionDep) -> list[dict[str, Any]]:
    """The receiving folder's files: names, sizes, times (the sender only with allow-view on)."""
    listed = connections.receiver_listing(session, caller, connection_id)
    return [{"name": f.name, "size": f.size, "modified": f.modified.isoformat()} for f in listed]


@router.get("/{connection_id}/transfers", responses=REFUSALS)
def list_transfers(
    connection_id: RowId,
    caller: CallerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    state: Annotated[str | None, Query(max_length=40)] = None,
) -> list[dict[str, Any]]:
    """The files sent through the connection, as this side may see them."""
    return history.connection_history(session, caller, connection_id, limit=limit, state=state)


@router.post(
    "/{connection_id}/files", status_code=201, responses={**REFUSALS, 413: {"description": "too large"}}
)
async def send_file(
    connection_id: RowId,
    request: Request,
    response: Response,
    caller: CallerDep,
    content_disposition: Annotated[str | None, Header(description="attachment; filename=po.json")] = None,
    content_length: Annotated[int | None, Header(ge=0)] = None,
) -> dict[str, Any]:
    """Send a file through an active connection; the raw body is the file (as uploads are)."""
    name = filename_from(content_disposition)
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        raise errors.UnsupportedMediaType("send the file as the raw body (application/octet-stream)")
    limit = get_settings().max_upload_bytes
    if content_length is not None and content_length > limit:
        raise too_large(limit)

    def begin() -> outbox.OutboxUpload:
        with session_scope() as session:
            conn = connections.require(session, caller, connection_id)
            connections.check_can_send(session, caller, conn)
            return outbox.begin(session, caller, conn, name, remote_addr=_remote(request))

    try:
        upload = await run_in_threadpool(begin)
    except intake.SenderRefused as exc:
        raise errors.Forbidden(str(exc)) from None
    receipt = await receive(request, lambda: upload, upload.max_bytes, lambda receipt: receipt)
    sent = await run_in_threadpool(_transfer_of, receipt.id)
    response.headers["Location"] = f"/api/connections/{connection_id}/transfers"
    return {
        "file": receipt.name,
        "receipt": receipt.id,
        "size": receipt.size,
        "sha256": receipt.sha256,
        "transfer": sent,
        "held": receipt.held,
    }


def _transfer_of(receipt_id: int | None) -> int | None:
    from sqlmodel import select

    from core.models import Transfer

    with session_scope() as session:
        transfer = session.exec(select(Transfer).where(Transfer.receipt_id == receipt_id)).first()
        return transfer.id if transfer else None


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None
