"""`/peer/v1/connections/{uid}/uploads`: another instance pushes a connection's file to us (DESIGN-12 §5.5).

Every request is signed (api/peer_auth.py checks it before a body byte is read); the work is
core/b2b/peer_upload.py's. A PATCH body is streamed into the staged file as it arrives, in
pieces of about 256 KiB handed to a worker thread: never whole in memory, never blocking the loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api.errors import CLOSE
from api.peer_auth import JSON_BODY, NO_BODY, PeerAuth, PeerCall
from core.b2b import peer_side, peer_upload
from core.b2b.signing import UPLOAD
from core.config import get_settings
from core.errors import StatusError

# Bytes are handed to the disk in pieces this large: small enough that what arrived before a
# broken connection or a kill is mostly on disk (the resume's offset), large enough to be cheap.
WRITE_CHUNK = 256 * 1024


def _refused(exc: StatusError) -> JSONResponse:
    body: dict[str, Any] = {"message": exc.message}
    if isinstance(exc, peer_upload.OffsetMismatch):
        body["offset"] = exc.offset
    return JSONResponse(body, status_code=exc.status, headers=CLOSE)


def _length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


def router() -> APIRouter:
    """The upload routes, bound to this instance's connections and upload size limit."""
    auth = PeerAuth(peer_side.find_connection)
    routes = APIRouter(prefix="/peer/v1/connections/{uid}/uploads", tags=["peer"], include_in_schema=False)
    signed_json = auth.require(JSON_BODY)
    signed_upload = auth.require(UPLOAD, max_body_bytes=get_settings().max_upload_bytes)
    signed_get = auth.require(NO_BODY)

    @routes.post("")
    async def create_upload(uid: str, call: PeerCall = Depends(signed_json)) -> JSONResponse:
        try:
            status, answer = await run_in_threadpool(
                peer_upload.create, call.caller.connection.id, call.json()
            )
        except StatusError as exc:
            return _refused(exc)
        return JSONResponse(answer, status_code=status)

    @routes.get("/{upload}")
    async def upload_state(uid: str, upload: str, call: PeerCall = Depends(signed_get)) -> JSONResponse:
        try:
            answer = await run_in_threadpool(peer_upload.state, call.caller.connection.id, upload)
        except StatusError as exc:
            return _refused(exc)
        return JSONResponse(answer)

    @routes.patch("/{upload}")
    async def append(
        uid: str, upload: str, request: Request, call: PeerCall = Depends(signed_upload)
    ) -> JSONResponse:
        connection_id = call.caller.connection.id
        try:
            opened = await run_in_threadpool(
                peer_upload.begin_patch,
                connection_id,
                upload,
                request.headers.get("upload-offset"),
                _length(request),
            )
        except StatusError as exc:
            return _refused(exc)
        if isinstance(opened, dict):  # already complete: the same answer again (the body is not read)
            return JSONResponse(opened, headers=CLOSE)
        try:
            buffer = bytearray()
            async for chunk in request.stream():
                buffer += chunk
                if len(buffer) >= WRITE_CHUNK:
                    await run_in_threadpool(opened.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await run_in_threadpool(opened.write, bytes(buffer))
            answer = await run_in_threadpool(opened.finish)
        except ClientDisconnect:  # what arrived is kept for the resume
            if buffer:
                await run_in_threadpool(opened.write, bytes(buffer))
            return JSONResponse({"message": "the body ended early"}, status_code=400, headers=CLOSE)
        except StatusError as exc:
            return _refused(exc)
        finally:
            await run_in_threadpool(opened.abandon)
        return JSONResponse(answer)

    return routes
