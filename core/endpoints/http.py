"""An HTTP API as an endpoint ("web service consumer"), through httpx.

Push: each file is POSTed or PUT to a URL, as the raw body (`Content-Disposition` names the
file) or as a multipart form field. Pull: a listing URL returns JSON, files are fetched with GET
and removed with DELETE. What a partner's API looks like is configuration, not code.

Writes are spooled to an anonymous temporary file (`spool_dir`, default the system temp dir) and
sent on commit, streamed from disk with a `Content-Length`. So memory stays flat for any size,
nothing reaches the server before the file is complete (an abort sends nothing), and servers and
gateways that refuse chunked uploads still work. The cost is one local disk write of the file.
The server's answer (status, a subset of headers, up to 2 KiB of body) is kept in
`last_response` on both the endpoint and the stream, for the caller to store with the transfer.

Error mapping notes:
* 401 → `AuthError`, 403 → `PermissionDenied`, 404/410 → `NotFound` (but a push URL that answers
  404 or 405 is a `ConfigError`: the URL is wrong, not a file missing), 408/425/429/5xx and
  connection failures and timeouts → `TransientError`; a status outside `success_codes` on push
  is an `EndpointError` that quotes the status and the start of the body.
* DNS and TLS failures are `DnsError` and `TlsError` (core/endpoints/network.py), not retried:
  retrying will not fix a wrong host name or an untrusted certificate.
* Redirects are not followed unless `follow_redirects` allows it (`same-host` or `any`), and then
  for GET/HEAD only (an upload is never resent by a redirect); a refused one is a `RedirectRefused`
  that names the Location. Every hop, and every file URL a listing names on another host, is
  checked by core/netpolicy.py: never into a loopback, link-local or private range unless the
  endpoint's own URL is in that kind of range. Credentials go only to the endpoint's own origins.
* Secret settings (core/endpoints/http_settings.py: bearer, basic auth, secret headers, query-string
  values, URL userinfo) never appear in messages, `uri()` or `last_response`: they are scrubbed
  even when a server echoes them back.
"""

from __future__ import annotations

import builtins
import io
import json
import posixpath
import ssl
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO, TYPE_CHECKING, Any, BinaryIO, ClassVar
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpx

from core.endpoints.base import (
    CHUNK_SIZE,
    AuthError,
    ChunkReadStream,
    ConfigError,
    Endpoint,
    EndpointError,
    FileInfo,
    InvalidPath,
    NotFound,
    OnConflict,
    PermissionDenied,
    TransientError,
    Unreachable,
    WriteStream,
    clean_path,
)
from core.endpoints.http_settings import HttpSecrets, HttpSettings, pull_name_of
from core.endpoints.network import network_error
from core.endpoints.settings import EndpointSettings
from core.netpolicy import (
    NON_PUBLIC_KINDS,
    HostNotResolved,
    UrlNotAllowed,
    check_url,
    guarded_transport,
    host_kinds,
)

if TYPE_CHECKING:
    pass

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
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


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


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _content_disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _parse_time(value: Any) -> datetime:
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


def _http_date(value: str | None) -> datetime:
    if not value:
        return EPOCH
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return EPOCH
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _file_info(rel: str, headers: httpx.Headers, size: int) -> FileInfo:
    """A file's size (-1: the server does not say), Last-Modified and ETag from its headers."""
    return FileInfo(
        path=rel,
        size=size,
        modified=_http_date(headers.get("last-modified")),
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


class HttpReadStream(ChunkReadStream):
    """A streamed GET response body as a raw stream; failures come out as endpoint errors."""

    def __init__(self, response: httpx.Response, endpoint: HttpEndpoint, what: str) -> None:
        super().__init__(response.iter_bytes(), lambda: endpoint.errors(what))
        self._response = response

    def close(self) -> None:
        if not self.closed:
            self._pending = memoryview(b"")
            self._response.close()
        super().close()


class HttpWriteStream(WriteStream):
    """Spools the file to an anonymous temporary file; commit sends it, abort drops it."""

    def __init__(self, endpoint: HttpEndpoint, rel: str) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._rel = rel
        try:
            self._spool: IO[bytes] | None = tempfile.TemporaryFile(  # noqa: SIM115 (closed on commit/abort)
                prefix="tradelane-http-", dir=endpoint.spool_dir
            )
        except OSError as exc:
            raise ConfigError(f"cannot create a spool file in {endpoint.spool_dir}: {exc.strerror}") from None
        self.last_response: HttpResponseRecord | None = None

    def _write(self, data: bytes) -> None:
        assert self._spool is not None
        try:
            self._spool.write(data)
        except OSError as exc:
            raise EndpointError(f"cannot spool {self._rel} for upload: {exc.strerror or exc}") from exc

    def _commit(self) -> None:
        spool = self._spool
        assert spool is not None
        try:
            spool.flush()
            size = spool.tell()
            spool.seek(0)
            self.last_response = self._endpoint.push(self._rel, spool, size)
            self.answer = self.last_response.to_dict()
        finally:
            self._close_spool()

    def _abort(self) -> None:
        self._close_spool()

    def _close_spool(self) -> None:
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()


def _iter_file(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_SIZE):
        yield chunk


# --- the endpoint ------------------------------------------------------------------------------


class HttpEndpoint(Endpoint):
    """A partner's HTTP API; settings and secrets: core/endpoints/http_settings.py. Paths are
    quoted into URLs with "/" kept."""

    scheme: ClassVar[str] = "http"
    settings: HttpSettings
    secrets: HttpSecrets

    def __init__(self, settings: EndpointSettings | Mapping[str, Any], secrets: Any = None) -> None:
        super().__init__(settings, secrets)
        s = self.settings
        # The settings show a URL with secret query values as ***; the secrets keep it whole.
        whole = self.secrets.urls

        def real(key: str) -> str | None:
            shown: str | None = getattr(s, key)
            return whole.get(key, shown) if shown else None

        self.public_params = frozenset(s.public_params)
        self.url: str = real("url") or s.url
        self.method = s.method
        self.headers = dict(s.headers)
        self.success_codes = frozenset(s.success_codes)
        self.upload_mode = s.upload_mode
        self.file_field = s.file_field
        self.path_in_url = s.path_in_url
        self.list_url = real("list_url")
        self.pull_url = real("pull_url")
        self.pull_name = pull_name_of(self.pull_url, s.pull_name) if self.pull_url else None
        self.list_prefix_param = s.list_prefix_param or None
        self.download_url = real("download_url")
        self.delete_url = real("delete_url")
        self.delete_method = s.delete_method
        self.verify: bool | str = s.verify
        self.timeout = s.timeout
        self.spool_dir = s.spool_dir
        self.follow_redirects = s.follow_redirects
        self._secret_headers = self.secrets.request_headers()
        own = [self.url, self.list_url, self.pull_url, self.download_url, self.delete_url]
        self._own_origins = frozenset(_origin(url) for url in own if url)
        self.last_response: HttpResponseRecord | None = None
        self._listed_urls: dict[str, str] = {}
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    # --- client ------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        """The httpx client, created on first use so building an endpoint costs no I/O."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> httpx.Client:
        verify: bool | ssl.SSLContext = True
        if isinstance(self.verify, str):
            try:
                verify = ssl.create_default_context(cafile=self.verify)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"http endpoint cannot load CA file {self.verify!r}: {exc}") from None
        elif self.verify is False:
            verify = False
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 15.0))
        # No trust_env: proxies and .netrc from the environment must not change where files go.
        # The guarded transport checks every address it connects to, so a redirect or listed
        # URL that passed `_check_hop` cannot be re-resolved into a range (DNS rebinding) the
        # endpoint's own URLs are not in.
        transport = guarded_transport(allowed_kinds=self._own_kinds(), verify=verify)
        return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, transport=transport)

    def _own_kinds(self) -> frozenset[str]:
        """The non-public ranges the endpoint's own URLs are in: those it may always reach."""
        kinds: set[str] = set()
        for _scheme, host, _port in self._own_origins:
            try:
                kinds |= host_kinds(host)
            except HostNotResolved:
                # Unknown today: the request to it fails with a DNS error of its own; do not guess.
                return NON_PUBLIC_KINDS
        return frozenset(kinds)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @contextmanager
    def errors(self, what: str, url: str | None = None) -> Iterator[None]:
        """Map httpx errors raised inside the block; messages name the URL, never a secret."""
        try:
            yield
        except httpx.HTTPError as exc:
            host = urlsplit(url or self.url).hostname or "the server"
            raise self.redact(map_httpx_error(exc, what, host)) from exc
        except OSError as exc:  # reading the spool file while sending
            raise EndpointError(f"{what}: {exc.strerror or exc}") from exc

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        omit: frozenset[str] = frozenset(),
        follow: bool = True,
        named_by: str | None = None,
        **body: Any,
    ) -> httpx.Response:
        """One request with our headers. Redirects are followed by hand, and only as far as
        `follow_redirects` allows (`follow=False`: a 3xx is returned as it is); credentials go
        only to the endpoint's own origins. `named_by`: the listing URL that named `url`."""
        if named_by is not None and _host(url) != _host(named_by):
            self._check_hop(named_by, url, "the listing names a file at", same_host_only=False)
        extra = headers or {}
        configured = {k: v for k, v in self.headers.items() if k.lower() not in omit}
        start = url
        for _ in range(MAX_REDIRECTS + 1):
            credentials = self._secret_headers if _origin(url) in self._own_origins else {}
            sending = {**configured, **credentials, **extra}
            request = self.client.build_request(method, url, headers=sending, **body)
            response = self.client.send(request, stream=True)
            if not (follow and response.is_redirect and "location" in response.headers):
                return response
            response.close()
            target = urljoin(str(response.url), response.headers["location"])
            self._check_hop(start, target, f"HTTP {response.status_code} redirect to")
            url = target
        raise EndpointError(f"{public_url(start)}: more than {MAX_REDIRECTS} redirects")

    def _check_hop(self, start: str, target: str, how: str, *, same_host_only: bool = True) -> None:
        """May a request that began at `start` (our URL) go on to `target`, which the server named?
        Raises RedirectRefused saying why not."""
        shown = f"{public_url(start)}: {how} {public_url(target)}"
        if self.follow_redirects == "none" and same_host_only:
            raise RedirectRefused(
                f"{shown}, not followed: this endpoint follows no redirects "
                "(follow_redirects: same-host or any allows them)"
            )
        if self.follow_redirects != "any" and _host(target) != _host(start):
            raise RedirectRefused(
                f"{shown}, another host: refused (follow_redirects: any allows other hosts)"
            )
        if urlsplit(start).scheme == "https" and urlsplit(target).scheme != "https":
            raise RedirectRefused(f"{shown}: refused, it leaves HTTPS")
        if "@" in urlsplit(target).netloc:
            raise RedirectRefused(f"{shown}: refused, it carries user:password@")
        try:
            own_kinds = host_kinds(_host(start))
            check_url(target, own_kinds)
        except UrlNotAllowed as exc:
            raise RedirectRefused(
                f"{shown}: refused, {exc.reason} "
                "(an endpoint reaches no non-public range its own URL is not in)"
            ) from None

    def _record(self, method: str, url: str, response: httpx.Response) -> HttpResponseRecord:
        """Read at most EXCERPT_BYTES of the body (then stop) and keep a redacted summary."""
        body = b""
        truncated = False
        if method != "HEAD":
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > EXCERPT_BYTES:
                    truncated = True
                    body = body[:EXCERPT_BYTES]
                    break
        headers = {
            name: self.scrubber.text(response.headers[name][:256])
            for name in RECORDED_HEADERS
            if name in response.headers
        }
        return HttpResponseRecord(
            method=method,
            url=public_url(url),
            status=response.status_code,
            reason=response.reason_phrase,
            headers=headers,
            body=self.scrubber.text(body.decode("utf-8", "replace")),
            body_truncated=truncated,
        )

    def _status_error(self, record: HttpResponseRecord, what: str, *, push: bool = False) -> EndpointError:
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
        if status in _TRANSIENT_STATUSES or status >= 500:
            return TransientError(text)
        return EndpointError(text)

    def _fail(self, method: str, url: str, response: httpx.Response, what: str) -> EndpointError:
        """The error for an unwanted answer (the response is consumed and closed)."""
        try:
            with self.errors(what, url):
                record = self._record(method, url, response)
        finally:
            response.close()
        return self._status_error(record, what)

    # --- paths -------------------------------------------------------------------------------

    def file_url(self, rel: str) -> str:
        """Where one file is read (GET/HEAD): the pull URL, a listed URL, the download template,
        or url/path."""
        if self.pull_url and rel == self.pull_name:
            return self.pull_url
        if listed := self._listed_urls.get(rel):
            return listed
        if self.download_url:
            return self.download_url.replace("{path}", quote(rel, safe="/"))
        return join_url(self.url, rel)

    def _named_by(self, rel: str) -> str | None:
        """The listing URL, when `rel` is read from a URL that the listing named."""
        if self.pull_url and rel == self.pull_name:
            return None
        return self.list_url if rel in self._listed_urls else None

    def push_url(self, rel: str) -> str:
        return join_url(self.url, rel) if self.path_in_url else self.url

    def uri(self, path: str) -> str:
        rel = clean_path(path, allow_root=True)
        return public_url(self.file_url(rel) if rel else self.url)

    # --- operations --------------------------------------------------------------------------

    def push(self, rel: str, body: IO[bytes], size: int) -> HttpResponseRecord:
        """Send one spooled file (positioned at its start) to the push URL; returns the answer."""
        url = self.push_url(rel)
        what = public_url(url)
        name = posixpath.basename(rel)
        headers: dict[str, str] = {}
        omit: frozenset[str] = frozenset()
        send: dict[str, Any]
        if self.upload_mode == "multipart":
            # httpx sets the multipart Content-Type (with its boundary); a configured one must go.
            send = {"files": {self.file_field: (name, body, "application/octet-stream")}}
            omit = frozenset({"content-type"})
        else:
            headers = {"Content-Length": str(size), "Content-Disposition": _content_disposition(name)}
            if not any(k.lower() == "content-type" for k in self.headers):
                headers["Content-Type"] = "application/octet-stream"
            send = {"content": _iter_file(body)}
        with self.errors(what, url):
            response = self._send(self.method, url, headers=headers, omit=omit, follow=False, **send)
            try:
                record = self._record(self.method, url, response)
            finally:
                response.close()
        self.last_response = record
        if record.status not in self.success_codes:
            error = self._status_error(record, what, push=True)
            if type(error) is EndpointError and 200 <= record.status < 300:
                expected = ", ".join(str(c) for c in sorted(self.success_codes))
                error = EndpointError(f"{error} (expected one of {expected})")
            raise error
        return record

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        rel = clean_path(folder, allow_root=True)
        if self.pull_url:
            return self._list_pull_url(rel)
        if not self.list_url:
            raise ConfigError(
                f"{self.uri('')}: no list_url or pull_url configured, so this endpoint cannot be listed"
            )
        return self._list(rel, self.list_url)

    def _list_pull_url(self, rel: str) -> Iterator[FileInfo]:
        """The one file at pull_url, if the server has it now (404/410: nothing to take)."""
        assert self.pull_name is not None
        if rel:
            raise ConfigError(f"{self.uri('')}: a pull_url endpoint has no folders (asked for {rel!r})")
        try:
            yield self.stat(self.pull_name)
        except NotFound:
            return

    def _list(self, rel: str, list_url: str) -> Iterator[FileInfo]:
        what = public_url(list_url)
        params = {self.list_prefix_param: f"{rel}/" if rel else ""} if self.list_prefix_param else {}
        with self.errors(what, list_url):
            request_url = str(httpx.URL(list_url).copy_merge_params(params))
            response = self._send("GET", request_url, headers={"Accept": "application/json"})
            if not response.is_success:
                error = self._fail("GET", request_url, response, what)
                raise ConfigError(str(error)) if isinstance(error, NotFound) else error
            try:
                raw = bytearray()
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_LISTING_BYTES:
                        raise EndpointError(f"{what}: listing larger than {MAX_LISTING_BYTES} bytes")
            finally:
                response.close()
        try:
            data = json.loads(raw)
        except ValueError:
            raise EndpointError(f"{what}: the listing is not JSON") from None
        items = data.get("files") if isinstance(data, dict) else data
        if not isinstance(items, builtins.list):
            raise EndpointError(f"{what}: the listing is not a JSON list (or an object with 'files')")
        found: dict[str, FileInfo] = {}
        for item in items:
            info = self._listed(item, rel, str(response.url))
            if info is not None:
                found[info.path] = info
        for path in sorted(found):
            yield found[path]

    def _listed(self, item: Any, folder: str, base: str) -> FileInfo | None:
        """One listing entry as a FileInfo if it names a file directly inside `folder`."""
        if not isinstance(item, dict):
            return None
        name = item.get("name", item.get("path"))
        if not isinstance(name, str) or name.endswith("/"):
            return None
        try:
            path = clean_path(name)
        except InvalidPath:
            return None
        if posixpath.dirname(path) != folder or item.get("type") in ("dir", "directory", "folder"):
            return None
        try:
            size = int(item.get("size", -1))
        except (TypeError, ValueError):
            size = -1
        if isinstance(item.get("url"), str) and item["url"]:
            self._listed_urls[path] = urljoin(base, item["url"])
        etag = item.get("etag")
        return FileInfo(
            path=path,
            size=size,
            modified=_parse_time(item.get("modified", item.get("mtime"))),
            etag=str(etag).strip('"') if etag else None,
        )

    def stat(self, path: str) -> FileInfo:
        rel = clean_path(path)
        url = self.file_url(rel)
        what = public_url(url)
        with self.errors(what, url):
            response = self._send("HEAD", url, named_by=self._named_by(rel))
            response.close()
        status, headers = response.status_code, response.headers
        if response.is_success and "content-length" in headers:
            return _file_info(rel, headers, int(headers["content-length"]))
        if self.list_url and (response.is_success or status in (405, 501)):
            # HEAD not supported, or no size: the listing knows.
            for info in self._list(posixpath.dirname(rel), self.list_url):
                if info.path == rel:
                    return info
            raise NotFound(f"{what}: not in the listing")
        if response.is_success or status in (405, 501):
            # No listing to ask: the headers of a GET whose body is not read.
            with self.errors(what, url):
                response = self._send("GET", url, named_by=self._named_by(rel))
            if not response.is_success:
                raise self._fail("GET", url, response, what)
            response.close()
            length = response.headers.get("content-length")
            return _file_info(rel, response.headers, int(length) if length and length.isdigit() else -1)
        raise self._status_error(
            HttpResponseRecord("HEAD", public_url(url), status, response.reason_phrase), what
        )

    def open_read(self, path: str) -> BinaryIO:
        rel = clean_path(path)
        url = self.file_url(rel)
        what = public_url(url)
        with self.errors(what, url):
            response = self._send("GET", url, named_by=self._named_by(rel))
        if not response.is_success:
            raise self._fail("GET", url, response, what)
        return io.BufferedReader(HttpReadStream(response, self, what), buffer_size=CHUNK_SIZE)

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        self.refuse_on_conflict(on_conflict)
        return HttpWriteStream(self, clean_path(path))

    def delete(self, path: str) -> None:
        rel = clean_path(path)
        if self.delete_url:
            url = self.delete_url.replace("{path}", quote(rel, safe="/"))
        elif self.pull_url and rel == self.pull_name:
            url = self.pull_url
        else:  # the file's resource URL; a listed or templated download link is for GET only
            url = join_url(self.url, rel)
        what = public_url(url)
        with self.errors(what, url):
            response = self._send(self.delete_method, url, follow=False)
        if not response.is_success:
            raise self._fail(self.delete_method, url, response, what)
        response.close()
        self._listed_urls.pop(rel, None)

    def check(self) -> None:
        """List if we can; otherwise prove the push URL is reachable and takes our credentials."""
        if self.list_url or self.pull_url:
            super().check()
            return
        what = public_url(self.url)
        with self.errors(what, self.url):
            response = self._send("HEAD", self.url)
            response.close()
        if response.status_code in (401, 403):
            record = HttpResponseRecord("HEAD", what, response.status_code, response.reason_phrase)
            raise self._status_error(record, what)
