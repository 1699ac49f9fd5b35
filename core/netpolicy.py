"""May tradelane fetch this URL? The check against server-side request forgery (SSRF).

A URL that someone else chose (a redirect's Location, a file URL in a listing, an AS2 partner's
MDN address) must not make tradelane talk to its own host or network: Prefect's API on loopback,
a cloud metadata service on link-local, a database on the private network. The host is resolved
and every address it resolves to is classified; an address that is not public is refused unless
the caller allows its kind (an endpoint whose own URL is on the private network may be redirected
within it).

The check resolves the name itself, so a name that resolves differently a moment later (DNS
rebinding) is not caught here; it stops the plain case of a URL pointing inward.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Kinds of non-public addresses, as named in messages.
LOOPBACK = "loopback"
LINK_LOCAL = "link-local"
PRIVATE = "private"
MULTICAST = "multicast"
UNSPECIFIED = "unspecified"
RESERVED = "reserved"
NON_PUBLIC_KINDS = frozenset({LOOPBACK, LINK_LOCAL, PRIVATE, MULTICAST, UNSPECIFIED, RESERVED})


class UrlNotAllowed(ValueError):
    """A URL tradelane will not fetch: not http(s), no host, or a host inside a non-public range.
    `reason` is the message without the URL."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{_shown(url)}: {reason}" if url else reason)
        self.reason = reason


def address_kind(address: IPAddress) -> str | None:
    """The kind of non-public range `address` is in, or None for a public (global) address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
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
    if not address.is_global:  # shared address space (100.64/10), reserved blocks
        return RESERVED
    return None


def resolve(host: str) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is itself); UrlNotAllowed if none."""
    try:
        return [ipaddress.ip_address(host.strip("[]").split("%", 1)[0])]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlNotAllowed("", f"cannot resolve {host} to check where it points ({exc})") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def host_kinds(host: str) -> frozenset[str]:
    """The non-public kinds among the addresses `host` resolves to (empty: all public)."""
    return frozenset(kind for address in resolve(host) if (kind := address_kind(address)) is not None)


def check_url(url: str, allowed_kinds: frozenset[str] = frozenset()) -> None:
    """Raise UrlNotAllowed unless `url` is http(s) with a host whose every address is public or
    of a kind in `allowed_kinds`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlNotAllowed(url, "only http and https URLs are fetched")
    if not parts.hostname:
        raise UrlNotAllowed(url, "the URL has no host")
    try:
        addresses = resolve(parts.hostname)
    except UrlNotAllowed as exc:
        raise UrlNotAllowed(url, exc.reason) from None
    for address in addresses:
        kind = address_kind(address)
        if kind is not None and kind not in allowed_kinds:
            resolved = "" if str(address) == parts.hostname.strip("[]") else f" resolves to {address}, which"
            raise UrlNotAllowed(url, f"{parts.hostname}{resolved} is a {kind} address")


def check_public_url(url: str, allow_private: bool) -> None:
    """Raise UrlNotAllowed unless `url` may be fetched: http(s), and (unless `allow_private`) a host
    that resolves only to public addresses, never loopback, link-local, private, multicast or
    reserved ones."""
    check_url(url, NON_PUBLIC_KINDS if allow_private else frozenset())


def _shown(url: str) -> str:
    """The URL for a message: without user:password@ or query string (either may hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else url.split("?", 1)[0]
