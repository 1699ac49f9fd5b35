"""How the API is served: uvicorn with the httptools parser, with limits for clients that never finish.

uvicorn's httptools protocol (0.54) has no limit on the size of a request header and no timeout
for one that never completes: a never-finished 200 MB header was held in memory, and idle or
half-sent connections stayed open for ever. Its h11 protocol has a size limit but moves uploads
about 40% slower, so `LimitedHttpToolsProtocol` adds what nginx has by default to the httptools one
(and hands the body on without uvicorn's two copies of it, `on_body`):

| limit (setting)                      | nginx                       | past it                        |
| ------------------------------------ | --------------------------- | ------------------------------ |
| `api_max_header_bytes` (16 KiB)      | large_client_header_buffers | 431, connection closed         |
| `api_header_timeout_seconds` (20)    | client_header_timeout (60)  | 408, connection closed         |
| `api_body_timeout_seconds` (60)      | client_body_timeout (60)    | connection closed (upload lost) |
| `api_max_connections_per_address`    | limit_conn                  | 503 at connect, closed         |

and uvicorn's own settings do the rest: `limit_concurrency` (`api_max_connections`, 503) and
`timeout_keep_alive` (`api_keepalive_timeout_seconds`). Header bytes are counted as they arrive,
before the parser sees them, so a header is never held past the limit however it is split.

With `api_tls` the port speaks HTTPS with core/tls.py's certificate (asyncio's TLS transport sits
below the same protocol). `X-Forwarded-For`/`-Proto` are believed only from the proxies in
`forwarded_allow_ips` (none by default); those proxies are not held to the per-address cap, which
would otherwise cap every client behind them together.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from core import tls
from core.config import Settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# After refusing a request, keep reading (and dropping) what the client still sends, for this long
# and up to this much, before closing, as nginx's lingering_close does: closing with unread input
# resets the connection, and the client could lose the answer that says why.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_per_address: int  # 0: no cap
    proxies: tuple[IPNetwork, ...] = ()  # trusted reverse proxies: not capped

    def is_proxy(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size, header and body timeouts and a per-address cap.

    Not used directly: `limited_protocol(settings)` makes a subclass with the limits and its own
    count of connections per address (one per server).
    """

    limits: ClassVar[HttpLimits]
    connections_per_address: ClassVar[Counter[str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0  # of the request being received, until its header is complete
        self._in_body = False  # header complete, body not yet
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._address: str | None = None
        self._refused = False
        self._dropped = 0

    # --- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        cap = self.limits.max_per_address
        if address is not None and cap and not self.limits.is_proxy(address):
            if self.connections_per_address[address] >= cap:
                self._refuse(503, f"Too many connections from {address} (at most {cap}); try again later.")
                return
            self.connections_per_address[address] += 1
            self._address = address
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        if self._address is not None:
            self.connections_per_address[self._address] -= 1
            if self.connections_per_address[self._address] <= 0:
                del self.connections_per_address[self._address]
            self._address = None
        super().connection_lost(exc)

    # --- bytes in ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering after a refusal: dropped, up to a point
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        if self._in_body:
            self._last_read = self.loop.time()
            super().data_received(data)
            return
        if self._header_timer is None:  # the first bytes of a further request on this connection
            self._start_header_timer()
        room = self.limits.max_header_bytes - self._header_bytes
        if len(data) <= room:
            self._header_bytes += len(data)
            super().data_received(data)
            return
        # Give the parser only what fits: if the header ends in there, the rest is body.
        self._header_bytes += room
        if room:
            super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._in_body or self._header_bytes == 0:  # the header ended (and maybe its request, too)
            self.data_received(data[room:])
            return
        limit = self.limits.max_header_bytes
        self._refuse(431, f"The request line and headers are larger than {limit} bytes.", linger=True)

    # --- parser callbacks ----------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._cancel_header_timer()
        self._last_read = self.loop.time()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._check_body)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        # uvicorn appends each piece of body to a bytearray and its receive() copies that out
        # into bytes: two copies of every uploaded byte, and the bytearray's growth (realloc,
        # fresh pages) cost more than the rest of the parsing (1 GiB: 1.2 s of CPU, 0.45 s
        # without). A piece that arrives while nothing is waiting is kept as the parser's own
        # bytes object instead: `b"" += body` is `body`, and `bytes(body)` is `body` again. A
        # second piece before the app takes the first goes back to uvicorn's bytearray, so
        # pieces that pile up (tiny chunks of a chunked body) are still appended, not re-copied.
        cycle = self.cycle
        if not cycle.body:
            cycle.body = b""  # type: ignore[assignment]
        elif isinstance(cycle.body, bytes):
            cycle.body = bytearray(cycle.body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._header_bytes = 0
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # --- timers --------------------------------------------------------------------------------

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _stop_timers(self) -> None:
        self._cancel_header_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._in_body:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A request is still being answered: a pipelined next header may wait for it.
            self._start_header_timer()
            return
        seconds = self.limits.header_timeout
        self._refuse(408, f"The request header was not received within {seconds:g} seconds.")

    def _check_body(self) -> None:
        """Close a connection whose request body has stalled (not counting while we hold reading back)."""
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused or (self.cycle is not None and self.cycle.response_complete):
            self._last_read = now  # we stopped reading, or answered already: not the client's stall
        elif now - self._last_read >= self.limits.body_timeout:
            self.logger.info("closing a connection from %s: its request body stalled", self._address)
            self.transport.close()
            return
        self._body_timer = self.loop.call_at(self._last_read + self.limits.body_timeout, self._check_body)

    # --- refusals ------------------------------------------------------------------------------

    def _refuse(self, status: int, message: str, linger: bool = False) -> None:
        """Answer `status` with `message` and close, whatever state the request was in.

        `linger` for a client that is still sending (see LINGER_SECONDS); the others are closed at
        once, so that refused connections cannot pile up.
        """
        self._stop_timers()
        body = message.encode()
        head = [
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # nothing more goes out for it; its app sees a disconnect
            self.cycle.message_event.set()
        if self.transport.is_closing() or self._refused:
            return
        self._refused = True
        self.transport.write(b"".join(head) + body)
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()  # the answer, then our end of the connection
            self.flow.resume_reading()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def limited_protocol(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    """A protocol class with `settings`' limits and a per-address count of its own."""
    limits = HttpLimits(
        max_header_bytes=settings.api_max_header_bytes,
        header_timeout=settings.api_header_timeout_seconds,
        body_timeout=settings.api_body_timeout_seconds,
        max_per_address=settings.api_max_connections_per_address,
        proxies=trusted_proxies(settings),
    )
    namespace = {"limits": limits, "connections_per_address": Counter()}
    return type("HttpToolsProtocol", (LimitedHttpToolsProtocol,), namespace)


def trusted_proxies(settings: Settings) -> tuple[IPNetwork, ...]:
    """The networks of `forwarded_allow_ips` (validated by Settings)."""
    items = [item for item in settings.forwarded_allow_ips.split(",") if item]
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def tls_1_2_or_later(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's context for the certificate, refusing TLS before 1.2 whatever OpenSSL allows."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How `tradelane up` serves the API (tests serve it the same way, with their own settings)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.api_port,
        "http": limited_protocol(settings),  # httptools: uploads stream ~40% faster than with h11
        "log_level": "warning",
        "lifespan": "on",
        "access_log": False,
        "limit_concurrency": settings.api_max_connections or None,
        "timeout_keep_alive": settings.api_keepalive_timeout_seconds,
        # uvicorn believes X-Forwarded-For/-Proto from 127.0.0.1 by default: any local process could
        # then choose the address the lockout, bans, allow-lists and audit see. Only the proxies the
        # operator names are trusted; none by default.
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }
    if settings.api_tls:
        cert, key = tls.server_certificate(settings)
        options.update(
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            ssl_context_factory=tls_1_2_or_later,
        )
    options.update(overrides)
    return uvicorn.Config(app, **options)
