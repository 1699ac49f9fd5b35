"""The upload area without JavaScript: `POST /portal/upload`, a multipart form with one or more files.

The body is parsed as it arrives (python-multipart's push parser) and each file's bytes go straight
into the login's mailbox view (`open_upload(...).write()`, the staging SFTP and FTP use), so no
file is ever held whole in memory or spooled to a temporary file first, and the same limits, folder
rules and intake apply (protocol `portal`). Not resumable: a file cut off mid-way is discarded
(the page says so, inside <noscript>); the files before it are received.

The form's fields come in page order: `csrf`, `folder`, then the files. A file part before a valid
CSRF token is refused (403) before a byte of it is written; the request must also come from our
origin (api/web/security.py). The parser's callbacks only collect events; the blocking work (disk,
store) runs in a worker thread per received chunk, so the event loop stays free.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from urllib.parse import quote

from fastapi import APIRouter
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response

from api.upload import disposition_params
from api.web import security
from api.web.auth import LoggedIn, WebLoginDep, page, remote_addr
from core.mailbox import layout
from core.mailbox.doors import shared_doors
from core.mailbox.errors import Busy, Forbidden, InvalidName, MailboxError, QuotaExceeded
from core.mailbox.staging import StagedUpload
from core.mailbox.user_view import view_for
from core.mailbox.view import MailboxView

PROTOCOL = "portal"
FIELD_LIMIT = 4096  # a form field (csrf, folder), not a file
MAX_PARTS = 1000
FILES_FIELD = "files"


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Event = tuple[str, bytes]


@dataclass
class FormUpload:
    """What the parser found so far, and the file being written (blocking methods: worker thread)."""

    request: Request
    found: LoggedIn
    view: MailboxView
    folder: str
    csrf_ok: bool = False
    parts: int = 0
    received: list[str] = field(default_factory=list)
    _header: bytes = b""
    _headers: dict[str, str] = field(default_factory=dict)
    _field: str | None = None
    _value: bytearray = field(default_factory=bytearray)
    _handle: StagedUpload | None = None

    def handle_events(self, events: list[Event]) -> None:
        for kind, data in events:
            if kind == "begin":
                self.parts += 1
                if self.parts > MAX_PARTS:
                    raise Refused(400, f"the form has more than {MAX_PARTS} parts")
                self._headers, self._header, self._field, self._value = {}, b"", None, bytearray()
            elif kind == "field":
                self._header = data
            elif kind == "value":
                value = data.decode("latin-1")
                self._headers[self._header.decode("latin-1").strip().lower()] = value
            elif kind == "headers":
                self._start_part()
            elif kind == "data":
                self._data(data)
            elif kind == "end":
                self._end_part()

    def _start_part(self) -> None:
        params = disposition_params(self._headers.get("content-disposition", ""))
        name = params.get("name", "")
        if name != FILES_FIELD:
            self._field = name
            return
        filename = params.get("filename", "")
        if not filename:
            return  # a file input left empty
        if not self.csrf_ok:
            raise Refused(403, security.FORM_EXPIRED)
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):  # browsers send raw UTF-8
            filename = filename.encode("latin-1").decode("utf-8")
        path = f"/{self.folder}/{filename}"
        if "/" in filename or "\\" in filename or self.view.normalize(path) != path:
            raise Refused(400, f"not a plain file name: {filename!r}")
        if layout.is_in_progress_name(filename):
            raise Refused(400, f"{filename!r} ends like a temporary name: rename the file first")
        self._handle = self.view.open_upload(path)

    def _data(self, data: bytes) -> None:
        if self._handle is not None:
            self._handle.write(data)
        elif self._field is not None:
            self._value += data
            if len(self._value) > FIELD_LIMIT:
                raise Refused(413, f"the form field {self._field!r} is longer than {FIELD_LIMIT} bytes")

    def _end_part(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.complete()
            self.received.append(handle.name)
            return
        if self._field == security.CSRF_FIELD:
            security.check_csrf_value(self.request, self._value.decode("utf-8", "replace"))
            self.csrf_ok = True
        elif self._field == "folder" and self._value.decode("utf-8", "replace") != self.folder:
            raise Refused(400, "the form names another folder than the page it came from")
        self._field = None

    def discard(self) -> None:
        """A file cut off or refused mid-way: its bytes go (this upload cannot resume)."""
        handle, self._handle = self._handle, None
        if handle is not None and not handle.done:
            handle.abandon()
            with contextlib.suppress(MailboxError):
                self.view.staged.discard(handle.folder, handle.name)


def _status(exc: MailboxError) -> int:
    for kind, status in ((QuotaExceeded, 413), (Forbidden, 403), (InvalidName, 400), (Busy, 409)):
        if isinstance(exc, kind):
            return status
    return 400


def _parser(events: list[Event], boundary: bytes) -> MultipartParser:
    def keep(kind: str) -> object:
        def on(data: bytes | None = None, start: int = 0, end: int = 0) -> None:
            events.append((kind, bytes(data[start:end]) if data is not None else b""))

        return on

    callbacks = {
        "on_part_begin": keep("begin"),
        "on_header_field": keep("field"),
        "on_header_value": keep("value"),
        "on_headers_finished": keep("headers"),
        "on_part_data": keep("data"),
        "on_part_end": keep("end"),
    }
    return MultipartParser(boundary, callbacks)  # type: ignore[arg-type]


async def receive_form(request: Request, found: LoggedIn, view: MailboxView, folder: str) -> list[str]:
    """Stream the multipart body into uploads; the names received (Refused on the first problem)."""
    security.check_origin(request)
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Refused(415, "send the files as the page's form does (multipart/form-data)")
    events: list[Event] = []
    parser = _parser(events, boundary)
    form = FormUpload(request, found, view, folder)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if events:
                batch = events[:]
                events.clear()
                await run_in_threadpool(form.handle_events, batch)
        parser.finalize()
        if events:
            await run_in_threadpool(form.handle_events, events[:])
    except BaseException as exc:
        await run_in_threadpool(form.discard)
        if isinstance(exc, ClientDisconnect):
            raise Refused(400, "the connection broke before the files were complete") from None
        if isinstance(exc, security.FormRefused):
            raise Refused(exc.status, exc.message) from None
        if isinstance(exc, MailboxError):
            done = f" ({len(form.received)} file(s) before it were received)" if form.received else ""
            raise Refused(_status(exc), f"{exc}{done}") from None
        if isinstance(exc, ValueError) and not isinstance(exc, Refused):
            raise Refused(400, f"the form could not be read: {exc}") from None
        raise
    return form.received


router = APIRouter(include_in_schema=False)


def _view(found: LoggedIn, request: Request) -> MailboxView:
    return view_for(found.login, shared_doors(), remote_addr(request), PROTOCOL)


@router.post("/portal/upload")
async def post_upload(request: Request, found: WebLoginDep) -> Response:
    """The no-script upload: files in, then back to the page with how many were received."""
    view = await run_in_threadpool(_view, found, request)
    folder = "upload"
    back = "/portal/upload"
    if not found.is_partner:
        outbox = request.query_params.get("outbox", "")
        folder, back = f"b2b/{outbox}", f"/portal/b2b/{quote(outbox, safe='')}"
    try:
        received = await receive_form(request, found, view, folder)
    except Refused as refused:
        return page(request, "error.html", login=found, status=refused.status, message=refused.message)
    return RedirectResponse(f"{back}?received={len(received)}", status_code=303)
