"""May tradelane fetch this URL? The guard against server-side request forgery (SSRF).

A URL that someone else chose — an AS2 sender's `Receipt-Delivery-Option`, an HTTP redirect's
`Location`, a file URL in a polled listing — must not make tradelane talk to its own host or
network: Prefect's API on loopback, a cloud metadata service on link-local, a database on the
private network. Every address a host resolves to is classified (`address_kind`); a non-public
one is refused unless the caller allows its kind (an endpoint whose own URL is on the private
network may be redirected within it; tests on 127.0.0.1 allow everything explicitly). Two layers:

* `check_url(url, allowed_kinds)` / `check_public_url(url, allow_private)` — before a request:
  http/https, a host, and every address the host resolves to is public or of an allowed kind.
  Raises `UrlNotAllowed` (`HostNotResolved` when DNS has no answer, which callers may treat as
  transient).
* `guarded_transport(...)` — an httpx transport that checks the address it is about to connect
  to, every time it connects. This defeats DNS rebinding (a name that resolved to a public address
  at check time and to 127.0.0.1 at connect time) and any redirect hop. It uses no proxy (a proxy
  would connect for us, out of the guard's sight).

What allows private addresses must come from an explicit setting, never from the URL's sender.
"""

from __future__ import annotations

import ipaddress
import socket
import typing
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Kinds of non-public addresses, as named in messages and in `allowed_kinds`.
LOOPBACK = "loopback"
LINK_LOCAL = "link-local"
PRIVATE = "private"
MULTICAST = "multicast"
UNSPECIFIED = "unspecified"
RESERVED = "reserved"
NON_PUBLIC_KINDS = frozenset({LOOPBACK, LINK_LOCAL, PRIVATE, MULTICAST, UNSPECIFIED, RESERVED})

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UrlNotAllowed(ValueError):
    """A URL tradelane will not fetch: not http(s), no host, or a host at a non-public address.

    `reason` is the message without the URL (the URL may carry a secret; see `_shown`).
    """

    def __init__(self, reason: str, url: str = "") -> None:
        super().__init__(f"{_shown(url)}: {reason}" if url else reason)
        self.reason = reason


class HostNotResolved(UrlNotAllowed):
    """The URL's host name has no address (DNS failed); may succeed later."""


def address_kind(address: IPAddress) -> str | None:
    """The kind of non-public range `address` is in, or None for a public (global) address."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1, 2002:7f00:1:: (6to4) and 64:ff9b::a00:1 (NAT64) reach IPv4 hosts.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
    if address.is_loopback:
        return LOOPBACK
    if address.is_link_local:
        return LINK_LOCAL
    if address.is_multicast:
        return MULTICAST
    if address.is_unspecified:
        return UNSPECIFIED
    if address.is_private:
        return PRIVATE
    if not address.is_global or address.is_reserved:  # shared space (100.64/10), reserved blocks
        return RESERVED
    return None


def is_public_address(address: str | IPAddress) -> bool:
    """False for loopback, link-local, private, shared (CGNAT), reserved, multicast and unspecified."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    return address_kind(ip) is None


def resolve(host: str, port: int | None = None) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is itself); HostNotResolved if none."""
    try:
        return [ipaddress.ip_address(host.strip("[]").split("%", 1)[0])]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HostNotResolved(f"cannot resolve {host!r}: {exc}") from None
    found: list[IPAddress] = []
    for info in infos:
        # The scope id (fe80::1%eth0) is not part of the address; ip_address() refuses it.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def host_kinds(host: str) -> frozenset[str]:
    """The non-public kinds among the addresses `host` resolves to (empty: all public)."""
    return frozenset(kind for address in resolve(host) if (kind := address_kind(address)) is not None)


def check_address(host: str, address: IPAddress, allowed_kinds: frozenset[str] = frozenset()) -> None:
    kind = address_kind(address)
    if kind is not None and kind not in allowed_kinds:
        raise UrlNotAllowed(
            f"{host!r} is at {address}, a {kind} address (not public): tradelane does not connect "
            "there for a URL someone else chose"
        )


def check_url(url: str, allowed_kinds: frozenset[str] = frozenset()) -> None:
    """Raise UrlNotAllowed unless `url` is http(s) with a host whose every address is public or
    of a kind in `allowed_kinds`. With every kind allowed, no DNS lookup is made."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a malformed port or IPv6 literal
        raise UrlNotAllowed(f"not a usable URL ({exc})", url) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowed("only http:// and https:// URLs with a host are fetched", url)
    if allowed_kinds >= NON_PUBLIC_KINDS:
        return
    try:
        for address in resolve(parts.hostname, port):
            check_address(parts.hostname, address, allowed_kinds)
    except HostNotResolved as exc:
        raise HostNotResolved(exc.reason, url) from None
    except UrlNotAllowed as exc:
        raise UrlNotAllowed(exc.reason, url) from None


def check_public_url(url: str, allow_private: bool = False) -> None:
    """Raise UrlNotAllowed unless `url` may be fetched: http(s), and (unless `allow_private`) a host
    that resolves only to public addresses."""
    check_url(url, NON_PUBLIC_KINDS if allow_private else frozenset())


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, refuses non-public addresses, and connects to the checked address."""

    def __init__(self, allowed_kinds: frozenset[str]) -> None:
        self.allowed_kinds = allowed_kinds

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve(host, port)
            for address in addresses:
                check_address(host, address, self.allowed_kinds)
        except UrlNotAllowed as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for address in addresses:  # like socket.create_connection: the first that answers
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error


def guarded_transport(
    *, allow_private: bool = False, allowed_kinds: frozenset[str] = frozenset(), **options: typing.Any
) -> httpx.HTTPTransport:
    """An httpx transport that connects only to public addresses or those of `allowed_kinds`
    (every kind with `allow_private`); see the module docstring.

    `options` go to httpx.HTTPTransport (verify, retries, limits, ...), except `proxy`: a proxy
    would make the connection for us, out of this guard's sight.
    """
    if options.get("proxy") is not None:
        raise ValueError("a guarded transport cannot use a proxy")
    transport = httpx.HTTPTransport(**options)
    # httpx has no public hook for httpcore's network backend; the pool takes it as an attribute.
    transport._pool._network_backend = _GuardedBackend(NON_PUBLIC_KINDS if allow_private else allowed_kinds)
    return transport


def _shown(url: str) -> str:
    """The URL for a message: without user:password@ or query string (either may hold a secret)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url.split("?", 1)[0].rsplit("@", 1)[-1]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else url.split("?", 1)[0]
