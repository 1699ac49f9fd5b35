"""The partner portal: a logged-in partner's files in the browser (and an account user's B2B outboxes).

    GET  /portal, /portal/upload        a partner's upload area (drop or choose; tus via upload.js) and its
                                        recent uploads: received, delivered or rejected (+ why)
    GET  /portal/upload/recent          the recent uploads' <tbody> alone (upload.js refreshes it)
    POST /portal/upload                 the no-script fallback: a multipart form, streamed
    GET  /portal/download               download/: name, size, time, Download, Delete (where allowed)
    GET  /portal/files/{id}/content     one file of download/, streamed as an attachment
    POST /portal/files/{id}/delete      delete it (partners allowed to), 303 back
    GET  /portal/b2b, /portal/b2b/{o}   an account user's outboxes, and the upload area for one

Every page goes through the login's mailbox view (core/mailbox/view.py, user_view.py), the one
SFTP and FTP use: the same folder rules, open-file limits and audit (protocol `portal`). File ids
are the REST API's (api/ids.py: the folder's id from the login's uid, then the name), so an id of
another login's names no folder of this one: 404, never 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from api import ids
from api.routes.files import attachment
from api.web import fallback
from api.web.auth import CheckedFormDep, LoggedIn, WebLoginDep, WebPartnerDep, WebUserDep, page, remote_addr
from api.web.templates import render
from core.config import get_settings
from core.db import session_scope
from core.login import LoginRefused
from core.mailbox.access import Action
from core.mailbox.doors import shared_doors
from core.mailbox.errors import Forbidden, MailboxError, NoSuchFile
from core.mailbox.user_view import UserView, view_for
from core.mailbox.view import DownloadFile, Entry, MailboxView
from core.sessions import LiveSession, shared_registry
from core.uploads_status import UploadStatus, recent_uploads

PROTOCOL = "portal"
CHUNK_SIZE = 1024 * 1024
RECENT = 20
UPLOAD, DOWNLOAD = "upload", "download"
NOTHING_TO_DOWNLOAD = "Nothing to download yet. Files your contact sends you appear here."


def view_of(found: LoggedIn, request: Request) -> MailboxView:
    """The login's mailbox view for this request (blocking: call it in a worker thread)."""
    return view_for(found.login, shared_doors(), remote_addr(request), PROTOCOL)


def human_size(size: int) -> str:
    """1536 -> "1.5 KiB": sizes as people read them (the exact count is in the title)."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def utc(value: datetime | float) -> str:
    at = datetime.fromtimestamp(value, UTC) if isinstance(value, float | int) else value
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class FileRow:
    """A file of download/ as the page lists it."""

    id: str
    name: str
    size: int
    modified: str

    @property
    def shown_size(self) -> str:
        return human_size(self.size)


def _file_id(found: LoggedIn, folder: str, name: str) -> str:
    return ids.file_id(ids.folder_id(found.login.uid, folder), name)


def _parse_file_id(found: LoggedIn, file_id: str) -> tuple[str, str]:
    """(folder, name) of one of this login's files; NoSuchFile for anything else."""
    parsed = ids.parse_file_id(file_id)
    if parsed is not None:
        folder_id, name = parsed
        for folder in (DOWNLOAD, UPLOAD):
            if ids.folder_id(found.login.uid, folder) == folder_id:
                return folder, name
    raise NoSuchFile("no such file")


# --- the upload page -------------------------------------------------------------------------------


def _recent(found: LoggedIn) -> list[UploadStatus]:
    with session_scope() as session:
        return recent_uploads(session, found.scope, limit=RECENT)


def _upload_context(found: LoggedIn, request: Request, folder: str) -> dict[str, Any]:
    view = view_of(found, request)
    return {
        "folder": folder,
        "limit": human_size(view.max_file_bytes),
        "limit_bytes": view.max_file_bytes,
        "chunk": get_settings().portal_chunk_bytes,
        "recent": _recent(found),
        "human_size": human_size,
        "utc": utc,
    }


router = APIRouter(include_in_schema=False)


@router.get("/portal")
async def portal_home(request: Request, found: WebLoginDep) -> Response:
    """A partner's portal opens on its upload page; an account user's on its outboxes."""
    if not found.is_partner:
        return RedirectResponse("/portal/b2b", status_code=303)
    return await upload_page(request, found)


@router.get("/portal/upload")
async def upload_page(request: Request, found: WebPartnerDep) -> Response:
    context = await run_in_threadpool(_upload_context, found, request, UPLOAD)
    notice = _notice(request)
    return page(request, "portal/upload.html", login=found, title="Upload", notice=notice, **context)


@router.get("/portal/upload/recent")
async def recent_fragment(found: WebLoginDep) -> Response:
    """The recent uploads' table body alone, for upload.js to swap in (no script runs from it)."""
    recent = await run_in_threadpool(_recent, found)
    html = render("portal/_recent.html", recent=recent, human_size=human_size, utc=utc)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _notice(request: Request) -> str | None:
    """The post/redirect/get message a form's answer asked for (texts fixed here, names escaped)."""
    query = request.query_params
    if name := query.get("deleted"):
        return f"Deleted {name}."
    if count := query.get("received"):
        return f"Received {count} file(s)." if count.isdigit() else None
    return None


# --- download/ -------------------------------------------------------------------------------------


def _downloads(found: LoggedIn, request: Request) -> tuple[list[FileRow], bool]:
    view = view_of(found, request)
    entries: list[Entry] = view.listdir("/" + DOWNLOAD)
    rows = [FileRow(_file_id(found, DOWNLOAD, e.name), e.name, e.size, utc(e.mtime)) for e in entries]
    return rows, view.access.allows(DOWNLOAD, Action.DELETE)


@router.get("/portal/download")
async def download_page(request: Request, found: WebPartnerDep) -> Response:
    files, can_delete = await run_in_threadpool(_downloads, found, request)
    return page(
        request,
        "portal/download.html",
        login=found,
        title="Download",
        files=files,
        can_delete=can_delete,
        empty=NOTHING_TO_DOWNLOAD,
        notice=_notice(request),
    )


def _open(found: LoggedIn, request: Request, file_id: str) -> tuple[DownloadFile, str]:
    folder, name = _parse_file_id(found, file_id)
    return view_of(found, request).open_read(f"/{folder}/{name}"), name


def _chunks(handle: DownloadFile, live: LiveSession) -> Iterator[bytes]:
    try:
        with handle:  # closing audits the download (protocol portal) and frees the open-file slot
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk
    finally:
        shared_registry().close(live)  # the download counted as one of the login's sessions


@router.get("/portal/files/{file_id}/content")
async def download_file(request: Request, file_id: str, found: WebPartnerDep) -> Response:
    try:
        live = shared_registry().open(found.login, remote_addr(request), PROTOCOL, server_limit=False)
    except LoginRefused:
        limit = found.login.max_connections
        message = f"this login already has {limit} transfers or sessions open (its limit); try again soon"
        return _error(request, found, 429, message)
    try:
        handle, name = await run_in_threadpool(_open, found, request, file_id)
    except BaseException as exc:
        shared_registry().close(live)
        if isinstance(exc, NoSuchFile):
            return _error(request, found, 404, "no such file")
        if isinstance(exc, Forbidden):
            return _error(request, found, 403, str(exc))
        if isinstance(exc, MailboxError):
            return _error(request, found, 409, str(exc))
        raise
    headers = {
        "Content-Length": str(handle.size),
        "Content-Disposition": attachment(name),
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
    return StreamingResponse(_chunks(handle, live), media_type="application/octet-stream", headers=headers)


def _delete(found: LoggedIn, request: Request, file_id: str) -> str:
    folder, name = _parse_file_id(found, file_id)
    if folder != DOWNLOAD:
        raise NoSuchFile("no such file")
    view_of(found, request).remove(f"/{folder}/{name}")
    return name


@router.post("/portal/files/{file_id}/delete")
async def delete_file(
    request: Request, file_id: str, found: WebPartnerDep, _form: CheckedFormDep
) -> Response:
    try:
        name = await run_in_threadpool(_delete, found, request, file_id)
    except NoSuchFile:
        return _error(request, found, 404, "no such file")
    except MailboxError as exc:
        return _error(request, found, 403, str(exc))
    return RedirectResponse(f"/portal/download?deleted={quote(name, safe='')}", status_code=303)


def _error(request: Request, found: LoggedIn, status: int, message: str) -> Response:
    return page(request, "error.html", login=found, status=status, message=message)


# --- an account user's outboxes ------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    name: str
    writable: bool
    viewable: bool


def _outboxes(found: LoggedIn, request: Request) -> list[OutboxRow]:
    view = view_of(found, request)
    assert isinstance(view, UserView)
    rows = []
    for entry in view.listdir("/b2b"):
        _, actions = view.entry_actions(f"/b2b/{entry.name}")
        rows.append(OutboxRow(entry.name, Action.WRITE in actions, Action.LIST in actions))
    return rows


@router.get("/portal/b2b")
async def outboxes_page(request: Request, found: WebUserDep) -> Response:
    outboxes = await run_in_threadpool(_outboxes, found, request)
    return page(request, "portal/b2b.html", login=found, title="B2B outboxes", outboxes=outboxes, notice=None)


def _outbox_context(found: LoggedIn, request: Request, outbox: str) -> dict[str, Any] | None:
    view = view_of(found, request)
    assert isinstance(view, UserView)
    if outbox not in view.outboxes():
        return None
    _, actions = view.entry_actions(f"/b2b/{outbox}")
    listed = view.listdir(f"/b2b/{outbox}") if Action.LIST in actions else []
    context = _upload_context(found, request, f"b2b/{outbox}")
    context.update(
        outbox=outbox, writable=Action.WRITE in actions, listed=listed, viewable=Action.LIST in actions
    )
    return context


@router.get("/portal/b2b/{outbox}")
async def outbox_page(request: Request, outbox: str, found: WebUserDep) -> Response:
    try:
        context = await run_in_threadpool(_outbox_context, found, request, outbox)
    except MailboxError as exc:
        return _error(request, found, 403, str(exc))
    if context is None:
        return _error(request, found, 404, f"no outbox named {outbox!r}")
    notice = _notice(request)
    return page(
        request, "portal/outbox.html", login=found, title=f"Outbox {outbox}", notice=notice, **context
    )


def install(app: FastAPI) -> None:
    """Serve the portal's pages (its resumable uploads are api/web/tus.py's)."""
    app.include_router(router)
    app.include_router(fallback.router)  # POST /portal/upload: the upload area without script
