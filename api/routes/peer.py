"""`/peer/v1`: what another tradelane instance calls (DESIGN-12 §5.3, §5.4, §5.7).

* `POST /peer/v1/invitations/preview`, `.../decline` - the token (in the JSON body) is the authority;
* `POST /peer/v1/invitations/accept` - signed by the key its body offers (proof of possession);
* `GET /peer/v1/connections/{uid}`, `POST /peer/v1/connections/{uid}/revoke` - signed with the key
  minted for that connection (api/peer_auth.py checks it before any body is read), answered also
  once the connection is revoked, so the other side converges;
* `GET /peer/v1/connections/{uid}/files` - the receiving folder's names, sizes and times, for the
  sending instance while the receiver allows it (403 otherwise).

Answers come from core/b2b/peer_side.py, built from fixed words: never the receiving endpoint. The
router's lifespan runs the peer worker (revoke notices, state checks, nonce pruning, expiry).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from api.lifespans import sweeping
from api.peer_auth import NO_BODY, KeyOffer, PeerAuth, PeerCall, read_small_json
from core.b2b import peer_side
from core.sweeper import SweepThread


def _worker() -> SweepThread:
    from core.b2b.worker import worker  # imported when the app starts, not with the routes

    return worker


lifespan = sweeping(_worker)


router = APIRouter(prefix="/peer/v1", tags=["peer"], lifespan=lifespan)
auth = PeerAuth(peer_side.find_connection)

REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "not a usable request or token"},
    401: {"description": "not signed, a bad or old signature, an unknown key, a replayed nonce"},
    403: {"description": "the key does not belong to that connection"},
    404: {"description": "no such invitation"},
    409: {"description": "the invitation was already used"},
    410: {"description": "the invitation expired or was withdrawn"},
}

StateCall = Annotated[PeerCall, Depends(auth.require(NO_BODY, allow_revoked=True))]
ActiveCall = Annotated[PeerCall, Depends(auth.require(NO_BODY))]
Offer = Annotated[KeyOffer, Depends(auth.key_offer())]


@router.post("/invitations/preview", responses=REFUSALS)
async def preview(request: Request) -> dict[str, Any]:
    """What an invitation offers the other instance: `{inviter_account, inviter_email, name,
    direction (the accepter's), expires_at}`. Body: `{"token": "tlc1_..."}`."""
    return await run_in_threadpool(peer_side.preview, await read_small_json(request))


@router.post("/invitations/accept", responses=REFUSALS)
async def accept(offer: Offer) -> dict[str, Any]:
    """The other instance accepts, offering its key: `{token, peer_url, connection_uid, key_id,
    public_key, account, name}`, signed with that key. Answers our uid, key and account."""
    return await run_in_threadpool(peer_side.accept, offer.json(), offer.key_id)


@router.post("/invitations/decline", responses=REFUSALS)
async def decline(request: Request) -> dict[str, Any]:
    """The other instance declines the invitation. Body: `{"token": "tlc1_..."}`."""
    return await run_in_threadpool(peer_side.decline, await read_small_json(request))


@router.get("/connections/{uid}", responses=REFUSALS)
async def connection_state(uid: str, call: StateCall) -> dict[str, Any]:
    """Our side's `{state, allow_sender_view}`."""
    return await run_in_threadpool(peer_side.state, call.caller.connection.id)


@router.post("/connections/{uid}/revoke", responses=REFUSALS)
async def revoke(uid: str, call: StateCall) -> dict[str, Any]:
    """The other side revoked the connection: ours is revoked too."""
    return await run_in_threadpool(peer_side.revoked_by_peer, call.caller.connection.id)


@router.get("/connections/{uid}/files", responses=REFUSALS)
async def files(uid: str, call: ActiveCall) -> dict[str, Any]:
    """Our receiving folder, `{files: [{name, size, modified}]}`: only with our allow-view on (403)."""
    return await run_in_threadpool(peer_side.files, call.caller.connection.id)
