"""Files: upload into `upload/`, read metadata, download from `download/`, delete where allowed."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import errors
from api.bodies import BoundedBodyRoute
from api.deps import PartnerSpaceDep, RemoteAddr, SettingsDep, SpaceDep
from api.models import FileResource
from api.sessions import close_rest_session, counted_session, open_rest_session
from api.space import FileRef, Space, file_href
from api.upload import filename_from, receive, too_large
from api.user_space import UserSpace
from core import audit, intake
from core.b2b import outbox
from core.config import get_settings
from core.db import session_scope
from core.endpoints.base import CHUNK_SIZE, FileInfo
from core.endpoints.base import NotFound as StorageNotFound
from core.models import Receipt
from core.sessions import LiveSession

router = APIRouter(tags=["files"], route_class=BoundedBodyRoute)

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the file's bytes, sent as the raw body (not multipart)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
FILE_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "another partner's file, or not allowed here"},
    404: {"description": "no such file"},
}


@router.post(
    "/folders/{folder_id}/files",
    status_code=201,
    response_model_exclude_none=True,
    openapi_extra=UPLOAD_BODY,
    responses={
        400: {"description": "missing or invalid file name"},
        403: {"description": "not the upload folder (or an outbox), or a revoked connection's outbox"},
        413: {"description": "over the upload limit"},
    },
)
async def upload_file(
    folder_id: str,
    request: Request,
    response: Response,
    space: SpaceDep,
    settings: SettingsDep,
    remote_addr: RemoteAddr,
    content_disposition: Annotated[
        str | None, Header(description="attachment; filename=purchase_order_850.json")
    ] = None,
    content_length: Annotated[int | None, Header(ge=0)] = None,
) -> FileResource:
    """Upload a file into the upload folder (an account user: into one of its outboxes, `b2b/<outbox>`);
    the request body is the file's bytes."""
    if isinstance(space, UserSpace):
        return await _upload_into_outbox(folder_id, request, response, space, remote_addr)
    own = space.own_folder(folder_id)  # another partner's or no folder: a database read, in a thread
    folder = own if own is not None else await run_in_threadpool(space.folder, folder_id)
    if not space.can_upload(folder):
        raise errors.Forbidden("files can only be uploaded into the upload folder")
    name = filename_from(content_disposition)
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        raise errors.UnsupportedMediaType("send the file as the raw body (application/octet-stream)")
    limit = space.partner.max_file_bytes or settings.max_upload_bytes  # the partner's own, if set
    if content_length is not None and content_length > limit:
        raise too_large(limit)
    place = folder.name
    begin = partial(intake.begin, space.partner, place, name, protocol="rest", remote_addr=remote_addr)

    def described(receipt: Receipt) -> FileResource:
        try:
            modified = space.endpoint.stat(f"{place}/{name}").modified
        except StorageNotFound:  # already carried away by a data flow
            modified = receipt.received_at
        return space.file_resource(folder, name, receipt.size, modified, receipt.sha256)

    async with counted_session(space.partner, remote_addr):
        # The token's check of the partner (get_current_login) came before any of the body; the
        # upload begins (and checks it once more) with the first batch written.
        resource = await receive(request, partial(begin, max_bytes=limit), limit, described)
    response.headers["Location"] = file_href(resource.id)
    return resource


async def _upload_into_outbox(
    folder_id: str, request: Request, response: Response, space: UserSpace, remote_addr: str | None
) -> FileResource:
    """An account user's upload into `b2b/<outbox>`: intake with protocol `b2b`, attached to the
    connection (pending: held; active: carried at once; revoked: 403 with the revoke's date)."""
    folder = await run_in_threadpool(space.folder, folder_id)
    if folder.subspace != "outbox":
        raise errors.Forbidden(
            "this login is an account user: its files are sent through the account's outboxes, "
            "upload into b2b/<outbox>/"
        )
    name = filename_from(request.headers.get("content-disposition"))
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        raise errors.UnsupportedMediaType("send the file as the raw body (application/octet-stream)")
    limit = get_settings().max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)

    def begin() -> outbox.OutboxUpload:
        with session_scope() as session:
            return outbox.begin_in(
                session, space.scope_in(session), space.folder_name(folder), name, remote_addr=remote_addr
            )

    try:
        upload = await run_in_threadpool(begin)
    except intake.SenderRefused as exc:
        raise errors.Forbidden(str(exc)) from None
    receipt = await receive(request, lambda: upload, upload.max_bytes, lambda receipt: receipt)
    info = FileInfo(receipt.name, receipt.size, receipt.received_at)
    resource = space.file_resources(folder, [info])[0]
    resource.meta.sha256 = receipt.sha256
    response.headers["Location"] = file_href(resource.id)
    return resource


# The Cleo blog post this API follows shows `.../file` (singular) in its cURL example: the same
# upload, kept as a deprecated alias so that command works when sent with POST.
router.add_api_route(
    "/folders/{folder_id}/file",
    upload_file,
    methods=["POST"],
    status_code=201,
    response_model_exclude_none=True,
    openapi_extra=UPLOAD_BODY,
    deprecated=True,
    summary="Upload File (alias of POST /api/folders/{folder_id}/files)",
    responses={
        400: {"description": "missing or invalid file name"},
        403: {"description": "not the upload folder"},
        413: {"description": "over the upload limit"},
    },
)


@router.get("/folders/{folder_id}/file", include_in_schema=False)
def upload_with_get(folder_id: str) -> None:
    """The blog's example sends its upload with `-X GET`: say what to do instead."""
    raise errors.MethodNotAllowed(
        f"uploads are sent with POST to /api/folders/{folder_id}/files (the body is the file's bytes)",
        allow="POST",
    )


@router.get("/files/{file_id}", response_model_exclude_none=True, responses=FILE_ERRORS)
def get_file(file_id: str, space: SpaceDep) -> FileResource:
    """Get a file's metadata."""
    ref = space.file(file_id)
    return space.file_resources(ref.folder, [space.stat(ref)])[0]


def _chunks(handle: BinaryIO, live: LiveSession) -> Iterator[bytes]:
    try:
        with handle:
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk
    finally:
        close_rest_session(live)  # the download counted as one of the partner's sessions


def attachment(name: str) -> str:
    """Content-Disposition for `name`: an ASCII fallback plus the exact UTF-8 name (RFC 6266)."""
    fallback = name.encode("ascii", "replace").decode().replace("\\", "_").replace('"', "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get(
    "/files/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **FILE_ERRORS},
)
def download_file(file_id: str, space: PartnerSpaceDep, remote_addr: RemoteAddr) -> StreamingResponse:
    """Download a file from the download folder."""
    ref = space.file(file_id)
    if not space.can_download(ref.folder):
        raise errors.Forbidden("files in the upload folder cannot be downloaded")
    live = open_rest_session(space.partner, remote_addr)
    try:
        handle, size = space.open_read(ref)
    except BaseException:
        close_rest_session(live)
        raise
    try:
        _audit(space, "download", ref, remote_addr, size=size)
    except BaseException:
        handle.close()
        close_rest_session(live)
        raise
    headers = {"Content-Length": str(size), "Content-Disposition": attachment(ref.name)}
    return StreamingResponse(_chunks(handle, live), media_type="application/octet-stream", headers=headers)


@router.delete("/files/{file_id}", status_code=204, responses=FILE_ERRORS)
def delete_file(file_id: str, space: PartnerSpaceDep, remote_addr: RemoteAddr) -> None:
    """Delete a file from the download folder, if the partner may."""
    ref = space.file(file_id)
    if space.can_upload(ref.folder) and not space.can_delete(ref.folder):
        raise errors.Forbidden("files in the upload folder cannot be deleted")
    if not space.can_delete(ref.folder):
        raise errors.Forbidden("this partner may not delete downloaded files")
    space.delete(ref)
    _audit(space, "delete", ref, remote_addr)


def _audit(space: Space, action: str, ref: FileRef, remote_addr: str | None, **detail: object) -> None:
    """An audit event for what the partner did with one of its files over REST."""
    with session_scope() as session:
        audit.record(
            session,
            action,
            actor=f"partner:{space.partner.name}",
            account_id=space.partner.account_id,
            target=ref.path,
            remote_addr=remote_addr,
            protocol="rest",
            **detail,
        )
