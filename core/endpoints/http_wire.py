"""What an HTTP endpoint's requests and answers look like, apart from the endpoint: URLs for
people (never a credential or query string), the answer kept with a transfer (bounded, no
secrets), and httpx's failures as endpoint errors (DNS and TLS ones are not retried)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from core.endpoints.base import (
    AuthError,
    ConfigError,
    EndpointError,
    FileInfo,
    NotFound,
    PermissionDenied,
    TransientError,
    Unreachable,
)
from core.endpoints.network import network_error

EXCERPT_BYTES = 2048  # of a response body kept in `last_response`
MESSAGE_EXCERPT_CHARS = 200  # of a response body quoted in an error message
MAX_REDIRECTS = 5
MAX_LISTING_BYTES = 64 * 1024 * 1024
EPOCH = datetime.fromtimestamp(0, UTC)
# Response headers worth keeping with a transfer; anything else (cookies!) is dropped.
RECORDED_HEADERS = (
    "content-type",
    "content-length",
    "location",
    "etag",
    "last-modified",
    "date",
    "retry-after",
    "x-request-id",
    "request-id",
    "x-correlation-id",
    "x-amzn-requestid",
    "x-ms-request-id",
)
TRANSIENT_STATUSES = frozenset({408, 425, 429})


class RedirectRefused(ConfigError):
    """A redirect (or a listed file URL) the endpoint may not follow: not allowed by its
    `follow_redirects`, or into a network range its own URL is not in. Not retried."""


def map_httpx_error(exc: httpx.HTTPError, what: str, host: str) -> EndpointError:
    """Translate an httpx transport failure into the endpoint error tree."""
    if found := network_error(exc, what, host):
        return found
    if isinstance(exc, httpx.TimeoutException):
        return Unreachable(f"{what}: timed out talking to {host} ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return Unreachable(f"{what}: could not connect to {host}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConfigError(f"{what}: {exc}")
    if isinstance(exc, httpx.TransportError):
        return TransientError(f"{what}: could not talk to {host}: {type(exc).__name__}")
    return EndpointError(f"{what}: {type(exc).__name__}: {exc}")


# --- URLs --------------------------------------------------------------------------------------


def public_url(url: str) -> str:
    """A URL fit for people and logs: no user:password@, no query string (it may carry a key)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def join_url(base: str, rel: str) -> str:
    """`base` + "/" + the quoted relative path, keeping base's query string."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + "/" + quote(rel, safe="/") if rel else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def content_disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def parse_time(value: Any) -> datetime:
    """Listing times: ISO 8601 or seconds since the epoch; missing → the epoch (stable, not now)."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str) and value:
            parsed = datetime.fromisoformat(value)
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return EPOCH


def http_date(value: str | None) -> datetime:
    if not value:
        return EPOCH
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return EPOCH
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def file_info(rel: str, headers: httpx.Headers, size: int) -> FileInfo:
    """A file's size (-1: the server does not say), Last-Modified and ETag from its headers."""
    return FileInfo(
        path=rel,
        size=size,
        modified=http_date(headers.get("last-modified")),
        etag=headers.get("etag", "").removeprefix("W/").strip('"') or None,
    )


# --- responses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponseRecord:
    """What a server answered, kept for the transfer record: no secrets, bounded size."""

    method: str
    url: str  # without credentials or query string
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""  # the first EXCERPT_BYTES of the body, decoded leniently
    body_truncated: bool = False

    @property
    def excerpt(self) -> str:
        """The body's start on one line, for error messages."""
        text = " ".join(self.body.split())
        return text[:MESSAGE_EXCERPT_CHARS] + ("…" if len(text) > MESSAGE_EXCERPT_CHARS else "")

    def to_dict(self) -> dict[str, Any]:
        summary = f"HTTP {self.status} {self.reason}".strip() + (f": {self.excerpt}" if self.excerpt else "")
        return {
            "summary": summary,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "reason": self.reason,
            "headers": dict(self.headers),
            "body": self.body,
            "body_truncated": self.body_truncated,
        }


def status_error(record: HttpResponseRecord, what: str, *, push: bool = False) -> EndpointError:
    """The error for an unwanted answer: 401 AuthError, 403 PermissionDenied, 404/410 NotFound (a
    push URL answering 404/405 is wrong: ConfigError), 408/425/429/5xx TransientError."""
    status = record.status
    text = f"{what}: HTTP {status} {record.reason}".rstrip()
    if record.excerpt:
        text += f": {record.excerpt}"
    if retry_after := record.headers.get("retry-after"):
        text += f" (Retry-After: {retry_after})"
    if status == 401:
        return AuthError(text)
    if status == 403:
        return PermissionDenied(text)
    if push and status in (404, 405):
        return ConfigError(text)
    if status in (404, 410):
        return NotFound(text)
    if status in TRANSIENT_STATUSES or status >= 500:
        return TransientError(text)
    return EndpointError(text)
