"""`tradelane.file.received` from the long-running processes that take files in (the API, the
mailbox servers): sent in batches, from one thread, over one Prefect events websocket.

Emitted one by one with `emit_event`, each event crossed three threads (the caller's, Prefect's
events worker's loop and its queue reader, each woken per event) and its receipt's data flows and
partner were read in a query of their own: most of what the events cost `up`'s process per file.
Here a receipt is only queued; this module's thread wakes once per batch (the receipts of the next
`LINGER` seconds), reads their facts in one query and sends the events through Prefect's own
events client (the one `emit_event`'s worker uses: authentication, reconnection, resending what
the server did not confirm). The same events with the same content, at most `LINGER` s later.
Like every file event, never for correctness: a failure is logged, and loses no file.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from prefect.events.clients import EventsClient, get_events_client

from core.models import Receipt
from core.notify import facts
from core.notify.events import build
from flows.prefect_events import prefect_event

log = logging.getLogger("tradelane.events")

LINGER = 0.2  # seconds a batch gathers receipts after its first


def events_client() -> EventsClient:
    return get_events_client()


class ReceivedSender:
    """Queues receipts; a thread of its own sends their `received` events in batches."""

    def __init__(self, client_factory: Callable[[], EventsClient] = events_client) -> None:
        self._client_factory = client_factory
        self._lock = threading.Lock()
        self._pending: list[Receipt] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: EventsClient | None = None
        self._sending: asyncio.Lock | None = None

    def add(self, receipt: Receipt) -> None:
        """Cheap and non-blocking (the intake's hook): the first receipt of a batch wakes the thread."""
        with self._lock:
            self._pending.append(receipt)
            if self._scheduled:
                return
            self._scheduled = True
            loop = self._loop or self._start()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._send_later()))

    def flush(self, timeout: float = 30) -> None:
        """Send what is queued now, and wait until it was (at a role's stop; tests)."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._send_pending(), loop).result(timeout)

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = self._loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="tradelane-received-events", daemon=True).start()
        return loop

    async def _send_later(self) -> None:
        await asyncio.sleep(LINGER)
        await self._send_pending()

    async def _send_pending(self) -> None:
        if self._sending is None:
            self._sending = asyncio.Lock()
        async with self._sending:  # one batch at a time on the websocket, in order
            with self._lock:
                batch, self._pending, self._scheduled = self._pending, [], False
            if batch:
                await self._send(batch)

    async def _send(self, receipts: list[Receipt]) -> None:
        try:
            # In this thread, blocking its loop: it only sends these events.
            files = facts.of_receipts(receipts)
        except Exception:
            log.exception("could not read %d receipts for their events", len(receipts))
            return
        for receipt, file in zip(receipts, files, strict=True):
            event = build("received", file, held=True if receipt.held else None)
            occurred = receipt.received_at
            try:
                client = await self._open_client()
                await client.emit(prefect_event(event, occurred))
            except Exception:
                log.exception("could not emit %s", event.event)
                await self._close_client()  # opened again for the next event

    async def _open_client(self) -> EventsClient:
        if self._client is None:
            client = self._client_factory()
            await client.__aenter__()
            self._client = client
        return self._client

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except Exception:
                log.debug("closing the events client failed", exc_info=True)
