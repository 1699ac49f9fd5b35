"""AS2 over HTTP: partners POST messages to /as2/receive and async MDNs to /as2/mdn.

Not under /api and without a partner token: AS2 authenticates by signatures and certificates.
Before a byte of the body is read, the AS2-From/AS2-To pair must be one we trade as and the
declared Content-Length within TRADELANE_AS2_MAX_MESSAGE_BYTES; a refusal then closes the
connection, so a stranger cannot make us read (or keep receiving) a big body. The body is then
gathered in memory while under 1 MiB, past that streamed to an anonymous spool file, within the
cap (413 past it); core.as2.receive parses a large one from that file. The router's lifespan runs the AS2
worker (async MDNs, resends on MDN timeout) for as long as the app serves.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api.deps import RemoteAddr
from api.errors import CLOSE
from api.lifespans import sweeping
from core.as2.settings import as2_settings
from core.as2.spool import Spool
from core.sweeper import SweepThread

log = logging.getLogger(__name__)


def _worker() -> SweepThread:
    from core.as2.worker import worker  # imported when the app starts, not with the routes

    return worker


lifespan = sweeping(_worker)


router = APIRouter(prefix="/as2", tags=["as2"], lifespan=lifespan)


class _TooLarge(Exception):
    pass


# A body is gathered in memory up to this size; from it on it streams to a spool file, written a
# batch of this size at a time. A small message then costs no file and no thread hand-offs for it.
IN_MEMORY_BELOW = 1024 * 1024


async def _read_body(request: Request, limit: int, what: str) -> Spool | bytes:
    """The request body within `limit`: its bytes when under IN_MEMORY_BELOW, else streamed to
    disk (the caller closes the spool)."""
    from core.as2.spool import MessageTooLarge

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(str(MessageTooLarge(limit, what)))
    spool: Spool | None = None
    try:
        pending: list[bytes] = []
        pending_size = 0
        async for chunk in request.stream():
            pending.append(chunk)
            pending_size += len(chunk)
            if spool is None and pending_size > limit:
                raise MessageTooLarge(limit, what)
            if pending_size >= IN_MEMORY_BELOW:
                if spool is None:
                    spool = await run_in_threadpool(Spool, limit, what)
                await run_in_threadpool(spool.write, b"".join(pending))
                pending, pending_size = [], 0
        if spool is None:
            return b"".join(pending)
        if pending:
            await run_in_threadpool(spool.write, b"".join(pending))
        return spool
    except MessageTooLarge as exc:
        if spool is not None:
            await run_in_threadpool(spool.close)
        raise _TooLarge(str(exc)) from None
    except BaseException:
        if spool is not None:
            await run_in_threadpool(spool.close)
        raise


async def _close(body: Spool | bytes) -> None:
    if isinstance(body, Spool):
        await run_in_threadpool(body.close)


async def _whole_body(request: Request, limit: int, what: str) -> bytes:
    """The request body within `limit`, whole (MDNs: small)."""
    spool = await _read_body(request, limit, what)
    if isinstance(spool, bytes):
        return spool
    try:
        return await run_in_threadpool(spool.read_all)
    finally:
        await run_in_threadpool(spool.close)


@router.get("/receive", response_class=PlainTextResponse)
def receive_probe() -> str:
    """Partners' connectivity checks: AS2 messages are POSTed here."""
    return "tradelane AS2 receiver: POST AS2 messages to this URL\n"


@router.post(
    "/receive",
    response_model=None,
    responses={
        403: {"description": "unknown-trading-partner: AS2-From/AS2-To not a pair we trade as"},
        413: {"description": "message over the size limit"},
    },
)
async def receive(request: Request, remote_addr: RemoteAddr) -> Response:
    """Receive one AS2 message; answers with a sync MDN, or 200 and an async MDN later."""
    from core.as2 import receive as inbound
    from core.as2.worker import worker

    try:
        sender = await run_in_threadpool(inbound.check_sender, request.headers.items())
    except Exception:
        log.exception("AS2 receive failed")
        return JSONResponse(
            {"message": "the AS2 message could not be processed now; send it again later"}, 503, CLOSE
        )
    if isinstance(sender, inbound.Answer):  # refused on its headers: the body is never read
        return Response(content=sender.body, status_code=sender.status_code, headers=sender.headers)
    try:
        body = await _read_body(request, as2_settings().max_message_bytes, "AS2 message")
    except _TooLarge as exc:
        return JSONResponse({"message": str(exc)}, status_code=413, headers=CLOSE)
    except ClientDisconnect:
        return JSONResponse({"message": "the client disconnected before the message was complete"}, 400)
    try:
        answer = await run_in_threadpool(inbound.receive, request.headers.items(), body, remote_addr, sender)
    except Exception:  # receive() turns sender errors into MDNs; this is the database or a bug
        log.exception("AS2 receive failed")
        return JSONResponse(
            {"message": "the AS2 message could not be processed now; send it again later"}, status_code=503
        )
    finally:
        await _close(body)
    if answer.async_mdn_pending:
        worker.start()  # normally running already (lifespan); this covers apps served without it
        worker.wake()
    return Response(content=answer.body, status_code=answer.status_code, headers=answer.headers)


@router.post("/mdn", response_model=None)
async def mdn(request: Request) -> Response:
    """Receive an asynchronous MDN for a message we sent; closes the pending message."""
    from core.as2 import mdn as mdns

    try:
        body = await _whole_body(request, as2_settings().max_mdn_bytes, "MDN")
    except _TooLarge as exc:
        return JSONResponse({"message": str(exc)}, status_code=413, headers=CLOSE)
    except ClientDisconnect:
        return JSONResponse({"message": "the client disconnected before the MDN was complete"}, 400)
    try:
        outcome = await run_in_threadpool(mdns.receive_async, request.headers.items(), body)
    except Exception:
        log.exception("AS2 async MDN failed")
        return JSONResponse({"message": "the MDN could not be processed now; send it again later"}, 503)
    return JSONResponse({"message": outcome.message}, status_code=outcome.status_code)
