"""Our requests to another tradelane instance (`/peer/v1/...`), through the SSRF guard.

Every call goes through `core.netpolicy`: the URL is checked before the request and the transport
checks the address it connects to (DNS rebinding, redirects off). Non-public addresses are allowed
only with TRADELANE_PEER_ALLOW_PRIVATE=true (what tests on 127.0.0.1 set): a peer URL comes from a
link or a request someone else chose.

Answers become errors with the peer's status and (cleaned, shortened) message - `PeerAnswered` -
or `PeerUnavailable` (503) when it could not be reached. Invitation tokens travel in POST bodies
only, never in a URL we request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from core import netpolicy
from core.b2b import keys
from core.b2b.signing import sign_request, sign_with
from core.config import get_settings
from core.errors import Invalid, StatusError, Unavailable

PREFIX = "/peer/v1"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_MESSAGE = 300  # characters of a peer's message we repeat
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class PeerAnswered(StatusError):
    """The other instance refused: its status and its message (a refusal of a request we made)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PeerUnavailable(Unavailable):
    """The other instance could not be reached (or answered something that is not a peer answer)."""


def host_of(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


def allow_private() -> bool:
    return get_settings().peer_allow_private


def check_peer_url(url: str) -> str:
    """`url` as a peer base URL we may call: http(s), a host, public unless private ones are allowed."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise Invalid("a peer URL has no query, fragment or credentials")
    try:
        netpolicy.check_public_url(url, allow_private=allow_private())
    except netpolicy.HostNotResolved as exc:
        raise PeerUnavailable(f"{exc} (TRADELANE_PEER_ALLOW_PRIVATE)") from None
    except netpolicy.UrlNotAllowed as exc:
        raise Invalid(f"{exc} (TRADELANE_PEER_ALLOW_PRIVATE)") from None
    return url


def _clean(text: str) -> str:
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


@contextmanager
def open_client(timeout: httpx.Timeout = TIMEOUT) -> Iterator[httpx.Client]:
    """The one way this instance calls a peer: through netpolicy's guarded transport (checked at
    connect, so DNS cannot be rebound), no redirects, no proxy from the environment."""
    transport = netpolicy.guarded_transport(allow_private=allow_private())
    with httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        yield client


def _send(request: httpx.Request, host: str) -> dict[str, Any]:
    """Send `request`; its JSON object answer, or the peer's refusal as an error."""
    try:
        with open_client() as client:
            response = client.send(request)
    except httpx.HTTPError as exc:
        raise PeerUnavailable(
            f"the other instance at {host} did not answer: {_clean(str(exc)) or type(exc).__name__}"
        ) from None
    try:
        data = response.json()
    except (ValueError, json.JSONDecodeError):
        data = None
    if response.is_success:
        if not isinstance(data, dict):
            raise PeerUnavailable(
                f"the other instance at {host} answered something that is not a tradelane answer"
            )
        return data
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, str) or not message:
        message = f"the other instance at {host} refused (HTTP {response.status_code})"
    raise PeerAnswered(response.status_code, _clean(message))


def _json_request(method: str, url: str, body: dict[str, Any]) -> httpx.Request:
    content = json.dumps(body, separators=(",", ":")).encode()
    return httpx.Request(method, url, content=content, headers={"content-type": "application/json"})


# --- the invitation handshake (unsigned, or signed by the offered key) ----------------------------


def preview(base_url: str, token: str) -> dict[str, Any]:
    """What the invitation at `base_url` offers: inviter, its name, direction (ours), expiry."""
    return _send(
        _json_request("POST", f"{base_url}{PREFIX}/invitations/preview", {"token": token}), host_of(base_url)
    )


def decline(base_url: str, token: str) -> dict[str, Any]:
    return _send(
        _json_request("POST", f"{base_url}{PREFIX}/invitations/decline", {"token": token}), host_of(base_url)
    )


def accept(base_url: str, body: dict[str, Any], key_id: str, sealed_private_key: str) -> dict[str, Any]:
    """The accept request, signed with the key its body offers (proof of possession)."""
    request = _json_request("POST", f"{base_url}{PREFIX}/invitations/accept", body)
    sign_with(request, key_id, keys.open_private_key(sealed_private_key))
    return _send(request, host_of(base_url))


# --- an established connection (signed with our key for it) -------------------------------------


@dataclass(frozen=True)
class PeerTarget:
    """Where and as whom we call the other side of one connection."""

    base_url: str
    key: keys.OurKey

    @property
    def connection_url(self) -> str:
        return f"{self.base_url}{PREFIX}/connections/{self.key.their_connection_uid}"


def connection_state(target: PeerTarget) -> dict[str, Any]:
    """`{state, allow_sender_view}` of their side of the connection."""
    request = httpx.Request("GET", target.connection_url)
    sign_request(request, target.key)
    return _send(request, host_of(target.base_url))


def send_revoke(target: PeerTarget) -> dict[str, Any]:
    """Tell the other side we revoked the connection; it revokes its side."""
    request = httpx.Request("POST", f"{target.connection_url}/revoke", content=b"")
    sign_request(request, target.key)
    return _send(request, host_of(target.base_url))


def list_files(target: PeerTarget) -> dict[str, Any]:
    """`{files: [{name, size, modified}]}` of their receiving folder (their allow-view applies)."""
    request = httpx.Request("GET", f"{target.connection_url}/files")
    sign_request(request, target.key)
    return _send(request, host_of(target.base_url))
