"""A REST upload: the file name from Content-Disposition, and the body streamed into intake.

The body is never held in memory: chunks from `request.stream()` are gathered into batches of
`BATCH_BYTES` and written in order by a worker thread while the next batches arrive (at most
`BATCHES_AHEAD` waiting), so the event loop stays free and memory stays flat however large the
file. Past the size limit, on a client
disconnect or any other error the upload is aborted before the response goes out, so nothing is
left behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import weakref
from collections import deque
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import unquote

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from api import errors
from core.endpoints.errors import EndpointError
from core.intake import InvalidFileName, SenderRefused, Upload, UploadTooLarge, check_file_name
from core.models import Receipt

log = logging.getLogger(__name__)

BATCH_BYTES = 1024 * 1024
# Batches received and not yet written, besides the one being written. One was enough on average
# but not for the moments the writer falls behind (a writeback, a GIL hand-off): the loop stopped
# reading the socket and the client stalled. Two took ~10 % more MB/s (bench.rest_upload).
BATCHES_AHEAD = 2
T = TypeVar("T")

_SEGMENT = re.compile(r'(?:[^;"]|"(?:[^"\\]|\\.)*"?)+')
_EXT_VALUE = re.compile(r"([A-Za-z0-9!#$%&+^_`{}~-]+)'([A-Za-z0-9-]*)'(.*)", re.DOTALL)
_HINT = "e.g. 'Content-Disposition: attachment; filename=purchase_order_850.json'"


def disposition_params(value: str) -> dict[str, str]:
    """The parameters of a Content-Disposition value (RFC 6266), names lower-cased, quotes undone."""
    params: dict[str, str] = {}
    for segment in _SEGMENT.findall(value):
        key, eq, raw = segment.partition("=")
        if not eq:
            continue  # the disposition type, or a stray flag
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.DOTALL)
        params.setdefault(key.strip().lower(), raw)
    return params


def _decode_ext_value(value: str) -> str:
    """RFC 8187 `charset'language'percent-encoded` (filename*=UTF-8''na%C3%AFve.json)."""
    match = _EXT_VALUE.fullmatch(value)
    charset = match.group(1).lower() if match else ""
    if charset not in ("utf-8", "iso-8859-1"):
        raise errors.BadRequest(f"filename* must be UTF-8''<percent-encoded name>; {_HINT}")
    assert match is not None
    try:
        return unquote(match.group(3), encoding=charset, errors="strict")
    except UnicodeDecodeError:
        raise errors.BadRequest(f"filename* is not valid {charset}") from None


def _utf8_if_possible(value: str) -> str:
    """Header bytes arrive decoded as Latin-1, but clients (curl, browsers) put raw UTF-8 in filename=."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def filename_from(content_disposition: str | None) -> str:
    """The file name a client gave, checked to be a plain file name; 400 otherwise."""
    if not content_disposition:
        raise errors.BadRequest(f"a Content-Disposition header naming the file is required, {_HINT}")
    params = disposition_params(content_disposition)
    if "filename*" in params:  # RFC 6266: filename* wins over filename
        name = _decode_ext_value(params["filename*"])
    elif "filename" in params:
        name = _utf8_if_possible(params["filename"])
    else:
        raise errors.BadRequest(f"Content-Disposition has no filename, {_HINT}")
    try:
        return check_file_name(name)
    except InvalidFileName as exc:
        raise errors.BadRequest(str(exc)) from None


def too_large(limit: int) -> errors.ContentTooLarge:
    return errors.ContentTooLarge(f"file is larger than the upload limit of {limit} bytes")


# Uploads' disk and store work runs in at most this many threads at once, one per core (at least
# two: one may wait for the store's write lock while another writes). More only wait for each
# other: ten uploads at once in ten threads spent most of their system CPU passing the GIL (~2,800
# futex calls per 2 KiB upload) and took ~20 % more of the API's CPU per file on two cores.
UPLOAD_THREADS = max(2, min(os.cpu_count() or 2, 8))
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


async def in_upload_thread(func: Callable[[list[bytes]], T], pieces: list[bytes]) -> T:
    """`func(pieces)` in a worker thread, among at most UPLOAD_THREADS (per event loop)."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(UPLOAD_THREADS)
    return await anyio.to_thread.run_sync(func, pieces, limiter=limiter)


def write_all(upload: Upload, pieces: list[bytes]) -> None:
    """Write a batch piece by piece (joining them would copy every byte once more)."""
    for piece in pieces:
        upload.write(piece)


async def receive(
    request: Request,
    begin: Callable[[], Upload],
    max_bytes: int,
    then: Callable[[Receipt], T],
) -> T:
    """Stream the request body into the upload `begin()` starts, commit it, and return
    `then(receipt)`; abort on any failure.

    A worker thread writes and hashes one batch while the next ones arrive (both release the GIL):
    receiving overlaps writing, and at most `BATCHES_AHEAD` + 2 batches are held. The upload
    begins in the thread that writes its first batch, and the last batch, the commit and `then`
    share one thread too: a small file costs one hand-off to a worker thread, not four.
    `max_bytes` is the upload's limit, checked as the body arrives. A caller that must refuse
    before any of the body is read (a connection's state) begins the upload itself and passes a
    `begin` that returns it.
    """
    batch: list[bytes] = []
    batched = 0
    received = 0
    # The batches handed to the writer, oldest first: each one's write starts when the one before
    # it has ended, so the file is written in order by one thread at a time.
    writing: deque[asyncio.Future[None]] = deque()
    begun: list[Upload] = []

    def write(pieces: list[bytes]) -> None:
        if not begun:
            begun.append(begin())
        write_all(begun[0], pieces)

    def finish(pieces: list[bytes]) -> T:
        write(pieces)
        return then(begun[0].commit())

    async def write_after(before: asyncio.Future[None] | None, pieces: list[bytes]) -> None:
        if before is not None:
            await before  # its failure is this one's too: nothing is written past a gap
        await in_upload_thread(write, pieces)

    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise too_large(max_bytes)
            batch.append(chunk)
            batched += len(chunk)
            if batched >= BATCH_BYTES:
                if len(writing) > BATCHES_AHEAD:  # the body waits for the disk
                    await asyncio.shield(writing[0])
                    writing.popleft()  # only once done: the abort below waits for what is not
                writing.append(asyncio.ensure_future(write_after(writing[-1] if writing else None, batch)))
                batch = []
                batched = 0
        while writing:
            await asyncio.shield(writing[0])
            writing.popleft()
        return await in_upload_thread(finish, batch)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            if writing:  # let their thread finish before the file is removed under it
                await asyncio.wait(writing)
                for future in writing:
                    if not future.cancelled():
                        future.exception()  # retrieved: it was either raised above or is moot now
            if begun:
                await run_in_threadpool(begun[0].abort)
        if isinstance(exc, UploadTooLarge):
            raise too_large(max_bytes) from None
        if isinstance(exc, ClientDisconnect):
            raise errors.BadRequest("the client disconnected before the upload was complete") from None
        if isinstance(exc, SenderRefused):
            raise errors.Forbidden(str(exc)) from None
        if isinstance(exc, EndpointError):  # the hub's own storage failed (disk full, bucket down)
            log.error("an upload could not be stored: %s", exc)
            raise errors.ServiceUnavailable(
                "the file could not be stored; nothing was received, send it again later"
            ) from None
        raise
