"""A REST upload: the file name from Content-Disposition, and the body streamed into intake.

The body is never held in memory: chunks from `request.stream()` are gathered into batches of
`BATCH_BYTES` and written in order by a writer thread while the next batches arrive (at most
`BATCHES_AHEAD` waiting), so the event loop stays free and memory stays flat however large the
file. Past the size limit, on a client disconnect or any other error the upload is aborted before
the response goes out, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import weakref
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
# Batches received and not yet written, besides the one being written: room for the moments the
# writer falls behind (a writeback, a GIL hand-off) without the loop ceasing to read the socket.
BATCHES_AHEAD = 2
T = TypeVar("T")
A = TypeVar("A")

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
# An upload larger than a batch has a writer thread of its own for as long as it lasts (`_Writer`),
# counted apart, so that big uploads never keep small ones waiting for a thread. Writers spend
# most of their time hashing and writing outside the GIL; past this many, uploads wait for one
# (and their clients for the server to read on).
WRITER_THREADS = max(4, min(2 * (os.cpu_count() or 2), 16))
_limiters: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]
] = weakref.WeakKeyDictionary()


def _limiters_here() -> tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]:
    """(upload threads, writer threads) of the running event loop."""
    loop = asyncio.get_running_loop()
    limiters = _limiters.get(loop)
    if limiters is None:
        limiters = _limiters[loop] = (
            anyio.CapacityLimiter(UPLOAD_THREADS),
            anyio.CapacityLimiter(WRITER_THREADS),
        )
    return limiters


async def in_upload_thread(func: Callable[[A], T], arg: A, *, writer: bool = False) -> T:
    """`func(arg)` in a worker thread, among at most UPLOAD_THREADS (per event loop); a `writer`
    among at most WRITER_THREADS."""
    limiter = _limiters_here()[1 if writer else 0]
    return await anyio.to_thread.run_sync(func, arg, limiter=limiter)


def write_all(upload: Upload, pieces: list[bytes]) -> None:
    """Write a batch piece by piece (joining them would copy every byte once more)."""
    for piece in pieces:
        upload.write(piece)


class _Writer:
    """One worker thread that writes an upload's batches in order, as the event loop hands them over.

    The thread takes the next batch as soon as it has written one, without waiting for the event
    loop (which is busy receiving); `put` waits only while `BATCHES_AHEAD` batches are waiting.
    After a failed write the rest are dropped and the failure is raised by `put` or `close`.
    """

    def __init__(self, write: Callable[[list[bytes]], None]) -> None:
        self._write = write
        self._loop = asyncio.get_running_loop()
        self._batches: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self._room = asyncio.Semaphore(BATCHES_AHEAD + 1)  # waiting or being written
        self._failure: BaseException | None = None
        self._dropping = False  # the upload is being aborted: what is still queued is not written
        self._thread = asyncio.ensure_future(in_upload_thread(self._run, None, writer=True))

    def _run(self, _: None) -> None:
        while (pieces := self._batches.get()) is not None:
            if self._failure is None and not self._dropping:
                try:
                    self._write(pieces)
                except BaseException as exc:
                    self._failure = exc  # nothing is written past a gap
            with contextlib.suppress(RuntimeError):  # the loop is closed: no one waits for room
                self._loop.call_soon_threadsafe(self._room.release)

    async def put(self, pieces: list[bytes]) -> None:
        await self._room.acquire()
        if self._failure is not None:
            raise self._failure
        self._batches.put(pieces)

    async def close(self) -> None:
        """Wait until every batch is written; raise the failure if one was not."""
        broken = await self._end()
        failure = self._failure or broken
        if failure is not None:
            raise failure

    async def abort(self) -> None:
        """Drop what is not written yet, and wait for the thread to be done with the file."""
        self._dropping = True
        await self._end()

    async def _end(self) -> BaseException | None:
        """Let the thread finish; what broke it outside the writes (whose failures are kept in
        `_failure`), if anything."""
        self._batches.put(None)
        await asyncio.wait([self._thread])
        return None if self._thread.cancelled() else self._thread.exception()


async def receive(
    request: Request,
    begin: Callable[[], Upload],
    max_bytes: int,
    then: Callable[[Receipt], T],
) -> T:
    """Stream the request body into the upload `begin()` starts, commit it, and return
    `then(receipt)`; abort on any failure.

    A writer thread (`_Writer`) writes and hashes the batches while the next ones arrive (both
    release the GIL): receiving overlaps writing, and at most `BATCHES_AHEAD` + 2 batches are held.
    The upload begins in the thread that writes its first batch, and the last batch, the commit
    and `then` share one thread: a file smaller than a batch costs one hand-off to a worker thread.
    `max_bytes` is the upload's limit, checked as the body arrives. A caller that must refuse
    before any of the body is read (a connection's state) begins the upload itself and passes a
    `begin` that returns it.
    """
    batch: list[bytes] = []
    batched = 0
    received = 0
    begun: list[Upload] = []
    writer: _Writer | None = None

    def write(pieces: list[bytes]) -> None:
        if not begun:
            begun.append(begin())
        write_all(begun[0], pieces)

    def finish(pieces: list[bytes]) -> T:
        write(pieces)
        return then(begun[0].commit())

    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise too_large(max_bytes)
            batch.append(chunk)
            batched += len(chunk)
            if batched >= BATCH_BYTES:
                if writer is None:
                    writer = _Writer(write)
                await writer.put(batch)  # waits while BATCHES_AHEAD are waiting: the body waits for the disk
                batch = []
                batched = 0
        if writer is not None:
            await writer.close()
        return await in_upload_thread(finish, batch)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            if writer is not None:  # let its thread finish before the file is removed under it
                await writer.abort()
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
