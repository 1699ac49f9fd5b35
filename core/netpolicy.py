"""Which URLs tradelane may fetch or post to when someone else chose them (SSRF guard).

A URL that arrives from outside — an AS2 sender's `Receipt-Delivery-Option`, an HTTP redirect's
`Location` — must not make us reach our own loopback, the link-local metadata service, a private
network, multicast or an unspecified address. Two layers, used together:

* `check_public_url(url, allow_private=False)` — before a request: http/https, a host, and every
  address the host resolves to is public. Raises `UrlNotAllowed` (`HostNotResolved` when DNS has
  no answer, which callers may treat as transient).
* `guarded_transport(allow_private=False)` — an httpx transport that checks the address it is
  about to connect to, every time it connects. This is what defeats DNS rebinding (a name that
  resolved to a public address at check time and to 127.0.0.1 at connect time) and a redirect
  hop, should a caller follow redirects itself. It uses no proxy (a proxy would connect for us).

`allow_private=True` switches the address rule off (tests on 127.0.0.1, a partner on a private
network); it must come from an explicit setting, never from the URL's sender.
"""

from __future__ import annotations

import ipaddress
import socket
import typing
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlNotAllowed(ValueError):
    """A URL we must not fetch: not http(s), no host, or a host at a non-public address."""


class HostNotResolved(UrlNotAllowed):
    """The URL's host name has no address (DNS failed); may succeed later."""


def is_public_address(address: str | IPAddress) -> bool:
    """False for loopback, link-local, private, shared (CGNAT), reserved, multicast and unspecified."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 and 64:ff9b::10.0.0.1 reach IPv4 hosts: judge the IPv4 address.
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_public_address(mapped)
        if ip in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified or ip.is_reserved)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HostNotResolved(f"cannot resolve {host!r}: {exc}") from exc
    # The scope id (fe80::1%eth0) is not part of the address; ip_address() refuses it.
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_address(host: str, address: IPAddress, *, allow_private: bool = False) -> None:
    if not allow_private and not is_public_address(address):
        raise UrlNotAllowed(
            f"{host!r} is at {address}, a loopback, link-local, private, multicast or unspecified "
            "address, which tradelane does not connect to for a URL someone else chose"
        )


def check_public_url(url: str, *, allow_private: bool = False) -> None:
    """Raise UrlNotAllowed unless `url` is http(s) with a host whose every address is public.

    With `allow_private` only the scheme and host are checked (no DNS lookup).
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a malformed port or IPv6 literal
        raise UrlNotAllowed(f"not a usable URL: {url!r} ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowed(f"only http:// and https:// URLs with a host are allowed, not {url!r}")
    if allow_private:
        return
    for address in _addresses(parts.hostname, port):
        check_address(parts.hostname, address)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, refuses non-public addresses, and connects to the checked address."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = _addresses(host, port)
            for address in addresses:
                check_address(host, address, allow_private=self.allow_private)
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


def guarded_transport(*, allow_private: bool = False, **options: typing.Any) -> httpx.HTTPTransport:
    """An httpx transport that connects only to public addresses (see the module docstring).

    `options` go to httpx.HTTPTransport (verify, retries, limits, ...), except `proxy`: a proxy
    would make the connection for us, out of this guard's sight.
    """
    if options.get("proxy") is not None:
        raise ValueError("a guarded transport cannot use a proxy")
    transport = httpx.HTTPTransport(**options)
    # httpx has no public hook for httpcore's network backend; the pool takes it as an attribute.
    transport._pool._network_backend = _GuardedBackend(allow_private)
    return transport
