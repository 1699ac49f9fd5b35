"""Resumable browser uploads: the tus 1.0.0 protocol (core, creation, termination, expiration) on
the mailbox's staging, for the portal's upload area (api/static/web/upload.js + tus-js-client).

    OPTIONS /portal/uploads        what this server speaks (Tus-Version, -Extension, -Max-Size)
    POST    /portal/uploads        Upload-Length + Upload-Metadata (filename, folder) -> 201 Location
    HEAD    /portal/uploads/<id>   Upload-Offset: the bytes staged so far
    PATCH   /portal/uploads/<id>   Upload-Offset: N + application/offset+octet-stream: the next bytes
    DELETE  /portal/uploads/<id>   cancel: the staged bytes are discarded

The bytes go where an SFTP or FTP upload's go (core/mailbox/staging.py, through the login's view,
core/mailbox/view.py or user_view.py: the same folder rules, size limit, open-files ledger and
outbox rules), invisible until complete; the PATCH that makes the offset reach `Upload-Length`
takes the file in through intake (protocol `portal`), exactly once. The staging is the one truth
about the offset, and **a PATCH never truncates**: only `Upload-Offset == staged size` writes
(else 409 with the staged size; a browser re-sends a request from its old offset by itself when a
reused connection dies), and a second writer gets 423, both decided before a byte is read. The
SHA-256 runs on between requests (`StagedUpload.pause()`), so a chunked upload is hashed once.
**Whole means taken in**: tus clients take `Upload-Offset == Upload-Length` for done and send no
more, so whatever leaves the staged bytes whole takes the file in (a PATCH that ends, or one cut or
taken over with the last bytes in hand, shielded from the take-over), and HEAD takes in a whole file
a failed intake left staged, before it answers.

Every request but OPTIONS needs the web session (401 JSON otherwise); POST, PATCH and DELETE also
pass the Origin / Sec-Fetch-Site and CSRF checks (the token in `X-CSRF-Token`). The upload row
(core/web_uploads.py) is bound to the login: another login's id is 404. Answers carry
`Tus-Resumable: 1.0.0` and `Cache-Control: no-store`; errors are JSON `{"message": ...}` in the
mailbox's words (the same SFTP and FTP clients are given).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC
from email.utils import format_datetime

import anyio
from fastapi import APIRouter, Depends, FastAPI
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from api.web.auth import LoggedIn, MaybeWebLoginDep, WebLoginDep, check_unsafe_request, remote_addr
from core import web_uploads
from core.config import get_settings
from core.db import session_scope
from core.errors import StatusError
from core.login import LoginRefused, LoginUser
from core.mailbox import layout
from core.mailbox.doors import shared_doors
from core.mailbox.errors import (
    Busy,
    Forbidden,
    InvalidName,
    MailboxError,
    NoSuchFile,
    OffsetMismatch,
    QuotaExceeded,
    TooManyOpenFiles,
)
from core.mailbox.staging import StagedUpload
from core.mailbox.user_view import view_for
from core.mailbox.view import MailboxView
from core.models import Receipt, WebUpload, WebUploadState
from core.sessions import LiveSession, shared_registry

PROTOCOL = "portal"
BASE = "/portal/uploads"
TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination,expiration"
OCTETS = "application/offset+octet-stream"
METADATA_LIMIT = 4096
BATCH_BYTES = 1024 * 1024


class TusRefused(Exception):
    """A tus request refused: status, message, and headers the client needs (Upload-Offset on 409)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _answer(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers={**_common(), **(headers or {})})


def _common() -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}


def _refusal(exc: MailboxError | StatusError) -> TusRefused:
    """A mailbox's or core's refusal as a status, in its own words."""
    if isinstance(exc, StatusError):
        return TusRefused(exc.status, exc.message)
    if isinstance(exc, OffsetMismatch):
        return TusRefused(409, str(exc), {"Upload-Offset": str(exc.have)})
    if isinstance(exc, TooManyOpenFiles):
        return TusRefused(429, str(exc), {"Retry-After": "1"})
    status = {Busy: 423, Forbidden: 403, NoSuchFile: 404, InvalidName: 400, QuotaExceeded: 413}
    return TusRefused(next((s for kind, s in status.items() if isinstance(exc, kind)), 400), str(exc))


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    try:
        yield
    except (MailboxError, StatusError) as exc:
        raise _refusal(exc) from None


def _check_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise TusRefused(412, f"this server speaks tus {TUS_VERSION}", {"Tus-Version": TUS_VERSION})


def _whole_number(request: Request, header: str) -> int:
    value = request.headers.get(header, "").strip()
    if not value.isdigit() or len(value) > 19:
        raise TusRefused(400, f"{header} must be a whole number of bytes")
    return int(value)


def parse_metadata(value: str) -> dict[str, str]:
    """`Upload-Metadata: key base64,key2 base64` as text; refused when unreadable or too long."""
    if len(value) > METADATA_LIMIT:
        raise TusRefused(400, f"Upload-Metadata is longer than {METADATA_LIMIT} bytes")
    found: dict[str, str] = {}
    for pair in value.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not key:
            continue
        if key in found:
            raise TusRefused(400, f"Upload-Metadata names {key!r} twice")
        try:
            found[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise TusRefused(400, f"Upload-Metadata {key!r} is not base64 of UTF-8 text") from None
    return found


def _view(found: LoggedIn, request: Request) -> MailboxView:
    """The login's mailbox view, as SFTP and FTP get it (blocking: call it in a worker thread)."""
    return view_for(found.login, shared_doors(), remote_addr(request), PROTOCOL)


def _upload_path(view: MailboxView, folder: str, name: str) -> str:
    """The view's path of `folder/name`; a name with a separator, `..` or the like never gets to
    name another folder: the path must come out of normalisation unchanged."""
    if "\x00" in folder or "\x00" in name or "/" in name or "\\" in name or name in ("", ".", ".."):
        raise TusRefused(400, f"not a plain file name: {name!r}")
    path = f"/{folder}/{name}"
    with _refused():
        if view.normalize(path) != path:
            raise TusRefused(400, f"not a plain folder and file name: {folder}/{name}")
    return path


def _http_date(row: WebUpload) -> str:
    at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    return format_datetime(at.astimezone(UTC), usegmt=True)


def _limit(login: LoginUser) -> int:
    return login.max_file_bytes or get_settings().max_upload_bytes


def _open_live(login: LoginUser, addr: str | None) -> LiveSession:
    """A transfer counts against the login's session limit, as a REST one does."""
    try:
        return shared_registry().open(login, addr, PROTOCOL, server_limit=False)
    except LoginRefused:
        raise TusRefused(
            429,
            f"this login already has {login.max_connections} transfers or sessions open (its limit); "
            "try again when one has finished",
            {"Retry-After": "1"},
        ) from None


# --- the blocking halves (worker threads) ----------------------------------------------------------


def _create(found: LoggedIn, request: Request, length: int, folder: str, name: str) -> WebUpload:
    view = _view(found, request)
    path = _upload_path(view, folder, name)
    if layout.is_in_progress_name(name):
        # SFTP clients upload to such names and rename; a browser sends the file whole, so it would
        # stay staged, never taken in.
        suffixes = ", ".join(layout.IN_PROGRESS_SUFFIXES)
        raise TusRefused(400, f"{name!r} ends like a temporary name ({suffixes}): rename the file first")
    with _refused():
        folder, name = view.upload_target(path)
        with session_scope() as session:
            row, _superseded = web_uploads.create(session, found.login, folder, name, length)
            # A new upload starts afresh: bytes staged under this name before (a superseded browser
            # upload, an abandoned SFTP one) are not this file's. Busy: nothing is recorded.
            discarded = view.staged.discard(folder, name)
            session.flush()
            session.expunge(row)
        if discarded:
            view.audit("upload.discarded", f"{folder}/{name}")
        if length == 0:  # nothing to PATCH: the empty file is taken in now
            _complete(view.resume_upload(path, 0), row)
    return row


def _find(found: LoggedIn, upload_id: str) -> WebUpload:
    with _refused(), session_scope() as session:
        row = web_uploads.get(session, upload_id, found.login)
        session.expunge(row)
        return row


# **Exactly once.** The receipt and the row's `done` commit in one transaction (intake's `also`,
# `_complete`): a crash or a failed commit leaves both or neither, never a receipt with the row
# open (which HEAD would answer with offset 0, and the browser send the file a second time). The
# row goes from open to done by a conditional UPDATE (web_uploads.finish): of two completions of
# one upload, in this process or another one on the same store, the second's receipt rolls back.
# Within this process there is still a gap between intake's move of the staged file into the store
# and that commit (nothing staged, the row still open: offset 0), so completing holds the upload's
# lock through the intake, and every request that acts on the staged file (HEAD's offset, PATCH's
# start, DELETE) takes the lock and reads the row again: it sees either the bytes staged or the row
# done. (This process; as `_active`. Another process can see the gap and have the browser send the
# file again: that copy is dropped in `_complete` if the row is done by then, else its receipt
# rolls back. The README's sticky sessions spare the bytes.)
_locks_guard = threading.Lock()
_locks: dict[str, tuple[threading.Lock, int]] = {}


@contextlib.contextmanager
def _upload_lock(upload_id: str) -> Iterator[None]:
    with _locks_guard:
        lock, users = _locks.get(upload_id, (threading.Lock(), 0))
        _locks[upload_id] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _locks_guard:
            lock, users = _locks[upload_id]
            if users == 1:
                del _locks[upload_id]
            else:
                _locks[upload_id] = (lock, users - 1)


def _offset(found: LoggedIn, request: Request, upload_id: str) -> tuple[WebUpload, int]:
    """The upload (read again, under its lock) and its offset; a whole file still staged is taken
    in first: to tus-js-client an offset equal to the length means done, and it sends no more."""
    with _upload_lock(upload_id):
        row = _find(found, upload_id)
        if row.state == WebUploadState.done:
            return row, row.length
        view = _view(found, request)
        st = view.staged.stat(row.folder, row.name)
        staged = st.st_size if st else 0
        if staged == row.length:
            _take_in_whole(view, row)
        return row, staged


def _take_in_whole(view: MailboxView, row: WebUpload) -> None:
    """Take in a whole file no PATCH took in (its intake failed, the process stopped between the
    last byte and the intake); caller holds the upload's lock. A PATCH still holding the file takes
    it in itself."""
    try:
        with _refused():
            handle = view.resume_upload(f"/{row.folder}/{row.name}", row.length)
    except TusRefused as refused:
        if refused.status == 423:
            return
        raise
    _complete(handle, row)


def _complete(handle: StagedUpload, row: WebUpload) -> int | None:
    """Take the whole staged file in, the row marked done in the receipt's transaction; the receipt
    id, or None when another request or process took the upload in first (its receipt stands, this
    one rolled back). Caller holds the upload's lock."""

    def mark_done(session: Session, receipt: Receipt) -> None:
        web_uploads.finish(session, row.id, receipt.id)

    if _done_now(row.id):
        # Another process took the upload in while this request carried the bytes again (its HEAD
        # saw nothing staged on this machine): this copy is dropped before intake moves or shows it.
        handle.pause()
        with contextlib.suppress(OSError):
            handle.staged.unlink()
        row.state = WebUploadState.done
        return None
    try:
        with _refused():
            receipt = handle.complete(also=mark_done)
    except BaseException:
        if not _done_now(row.id):
            raise
        row.state = WebUploadState.done
        return None
    row.state = WebUploadState.done
    return receipt.id if receipt else None


def _done_now(upload_id: str) -> bool:
    with session_scope() as session:
        return web_uploads.is_done(session, upload_id)


def _begin_patch(
    found: LoggedIn, request: Request, upload_id: str, offset: int
) -> tuple[WebUpload, StagedUpload | None]:
    """The upload (read again, under its lock) and its staged file open at `offset`; no file when
    the upload is done (a PATCH that completed it ended while this one waited)."""
    view = _view(found, request)
    with _upload_lock(upload_id):
        row = _find(found, upload_id)
        if row.state == WebUploadState.done:
            return row, None
        with _refused():
            return row, view.resume_upload(f"/{row.folder}/{row.name}", offset)


def _end_patch(row: WebUpload, handle: StagedUpload, wrote: int) -> int | None:
    """After the body: take the file in when it is whole (the receipt id), else keep it for the next
    PATCH; the ledger records the request either way. Under the upload's lock until the row is done."""
    receipt_id = None
    with _upload_lock(row.id):
        try:
            if handle.size == row.length:
                receipt_id = _complete(handle, row)
            else:
                handle.pause()
        finally:
            with session_scope() as session:
                web_uploads.record_patch(session, row.id, wrote)
    return receipt_id


def _abandon(row: WebUpload, handle: StagedUpload, wrote: int) -> None:
    handle.abandon()
    with session_scope() as session:
        web_uploads.record_patch(session, row.id, wrote)


def _cancel(found: LoggedIn, request: Request, upload_id: str) -> None:
    view = _view(found, request)
    with _upload_lock(upload_id):
        row = _find(found, upload_id)
        if row.state == WebUploadState.done:  # taken in meanwhile: nothing left to cancel
            return
        with _refused(), session_scope() as session:
            if view.staged.discard(row.folder, row.name):
                view.audit("upload.discarded", f"{row.folder}/{row.name}")
            web_uploads.cancel(session, row.id)


# --- the routes ------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


@router.options(BASE)
async def options(found: MaybeWebLoginDep) -> Response:
    headers = {"Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS}
    limit = _limit(found.login) if found else get_settings().max_upload_bytes
    headers["Tus-Max-Size"] = str(limit)
    return _answer(204, headers)


@router.post(BASE, dependencies=[Depends(check_unsafe_request)])
async def create(request: Request, found: WebLoginDep) -> Response:
    _check_version(request)
    length = _whole_number(request, "Upload-Length")
    limit = _limit(found.login)
    if length > limit:
        raise TusRefused(413, f"file is larger than the limit of {limit} bytes")
    meta = parse_metadata(request.headers.get("upload-metadata", ""))
    name = meta.get("filename", "")
    if not name:
        raise TusRefused(400, "Upload-Metadata must name the file (filename)")
    folder = meta.get("folder") or ("upload" if found.is_partner else "")
    if not folder:
        raise TusRefused(400, "Upload-Metadata must name the outbox (folder b2b/<outbox>)")
    row = await run_in_threadpool(_create, found, request, length, folder, name)
    headers = {"Location": f"{BASE}/{row.id}", "Upload-Expires": _http_date(row)}
    if length == 0:
        headers["Upload-Offset"] = "0"
    return _answer(201, headers)


@router.head(BASE + "/{upload_id}")
async def head(request: Request, upload_id: str, found: WebLoginDep) -> Response:
    _check_version(request)
    row, offset = await run_in_threadpool(_offset, found, request, upload_id)
    headers = {
        "Upload-Offset": str(offset),
        "Upload-Length": str(row.length),
        "Upload-Expires": _http_date(row),
    }
    return _answer(200, headers)


@router.patch(BASE + "/{upload_id}", dependencies=[Depends(check_unsafe_request)])
async def patch(request: Request, upload_id: str, found: WebLoginDep) -> Response:
    _check_version(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != OCTETS:
        raise TusRefused(415, f"send {OCTETS}")
    offset = _whole_number(request, "Upload-Offset")
    row = await run_in_threadpool(_find, found, upload_id)
    if row.state == WebUploadState.done:
        return _complete_answer(row, offset)
    if offset > row.length:
        raise TusRefused(400, "Upload-Offset is past Upload-Length")
    live = await run_in_threadpool(_open_live, found.login, remote_addr(request))
    mine = _Running()
    try:
        await _take_over(upload_id, mine)
        with mine.scope:
            row, handle = await run_in_threadpool(_begin_patch, found, request, upload_id, offset)
            if handle is None:  # the PATCH this one took over from completed it
                return _complete_answer(row, offset)
            wrote = await _receive(request, row, handle, offset)
            # The body is in: a newer PATCH's take-over must not stop this one between its last
            # write and the intake (the file would stay whole and open, and HEAD say it is whole);
            # the newer one waits for it and then finds the upload done.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(_end_patch, row, handle, wrote)
            return _answer(204, {"Upload-Offset": str(handle.size)})
        raise TusRefused(409, "a newer request for this upload took over; ask for the offset (HEAD)")
    finally:
        mine.finished.set()
        if _running.get(upload_id) is mine:
            del _running[upload_id]
        shared_registry().close(live)


def _complete_answer(row: WebUpload, offset: int) -> Response:
    """A PATCH of an upload already taken in: a late retry of the PATCH that finished it is told so
    (204), any other offset 409 with the length; never a second intake."""
    if offset == row.length:
        return _answer(204, {"Upload-Offset": str(row.length)})
    raise TusRefused(409, "this upload is complete", {"Upload-Offset": str(row.length)})


class _Running:
    """A PATCH in progress: the scope a newer PATCH of the same upload cancels, and when it ended."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.finished = anyio.Event()


# The PATCH writing each upload now, by upload id (this process). **Newest PATCH wins**: a browser
# that lost its connection silently (no RST: a laptop leaving Wi-Fi) retries while the old request
# still waits for bytes and holds the staged file until the body timeout; the retry cancels it, the
# old request writes the bytes it holds and lets go, then the retry goes on (409 or writes).
_running: dict[str, _Running] = {}
TAKE_OVER_SECONDS = 2.0


async def _take_over(upload_id: str, mine: _Running) -> None:
    previous = _running.get(upload_id)
    _running[upload_id] = mine
    if previous is not None:
        previous.scope.cancel()
        with anyio.move_on_after(TAKE_OVER_SECONDS):
            await previous.finished.wait()


async def _receive(request: Request, row: WebUpload, handle: StagedUpload, offset: int) -> int:
    """Stream the body into the staged file in batches (a worker thread writes them); a client gone
    mid-body or any failure leaves what was written staged for the next PATCH."""
    batch: list[bytes] = []
    batched = wrote = 0
    room = row.length - offset
    try:
        async for chunk in request.stream():
            if wrote + batched + len(chunk) > room:
                raise TusRefused(400, "the body runs past Upload-Length: the bytes before it are kept")
            batch.append(chunk)
            batched += len(chunk)
            if batched >= BATCH_BYTES:
                await run_in_threadpool(_write, handle, b"".join(batch))
                wrote += batched
                batch.clear()
                batched = 0
        if batch:
            await run_in_threadpool(_write, handle, b"".join(batch))
            wrote += batched
        return wrote
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            if batch and not handle.done:  # cut, cancelled by a newer PATCH, or past the length
                with contextlib.suppress(MailboxError, TusRefused):
                    await run_in_threadpool(_write, handle, b"".join(batch))  # the batch in hand
                    wrote += batched
            if not handle.done and handle.size == row.length:
                # The bytes in hand made the file whole: HEAD will say so and the client send no
                # more, so it is taken in now (once: as the PATCH that ends cleanly would).
                await run_in_threadpool(_end_patch, row, handle, wrote)
            else:
                await run_in_threadpool(_abandon, row, handle, wrote)
        if isinstance(exc, ClientDisconnect):
            raise TusRefused(400, "the client went away mid-request; resume with HEAD") from None
        raise


def _write(handle: StagedUpload, data: bytes) -> None:
    with _refused():
        handle.write(data)


@router.delete(BASE + "/{upload_id}", dependencies=[Depends(check_unsafe_request)])
async def delete(request: Request, upload_id: str, found: WebLoginDep) -> Response:
    _check_version(request)
    row = await run_in_threadpool(_find, found, upload_id)
    if row.state != WebUploadState.done:
        await run_in_threadpool(_cancel, found, request, upload_id)
    return _answer(204)


async def _tus_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TusRefused)
    headers = {**_common(), **exc.headers}
    return JSONResponse({"message": exc.message}, status_code=exc.status, headers=headers)


def install(app: FastAPI) -> None:
    """Serve /portal/uploads and answer its refusals as tus clients expect them."""
    app.add_exception_handler(TusRefused, _tus_refused)
    app.include_router(router)
