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

Where the rest lives: settings and secrets in core/endpoints/http_settings.py; sending a request
(credentials only to the endpoint's own origins, redirects only as `follow_redirects` allows and
never into a range its own URLs are not in, every connection checked by core/netpolicy.py) in
core/endpoints/http_requests.py; URLs for people, the recorded answer and the error mapping in
core/endpoints/http_wire.py. In short: 401 → `AuthError`, 403 → `PermissionDenied`, 404/410 →
`NotFound` (a push URL answering 404 or 405 is a `ConfigError`), 408/425/429/5xx, refused and timed
out → `TransientError`, DNS and TLS failures `DnsError`/`TlsError`; a status outside
`success_codes` on push is an `EndpointError` quoting it and the start of the body. Secret settings
never appear in messages, `uri()` or `last_response`, even when a server echoes them back.
"""

from __future__ import annotations

import builtins
import io
import json
import posixpath
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, ClassVar
from urllib.parse import quote, urljoin, urlsplit

import httpx

from core.endpoints.base import (
    CHUNK_SIZE,
    ChunkReadStream,
    ConfigError,
    Endpoint,
    EndpointError,
    FileInfo,
    InvalidPath,
    NotFound,
    OnConflict,
    WriteStream,
    clean_path,
)
from core.endpoints.http_requests import HttpRequests
from core.endpoints.http_settings import HttpSecrets, HttpSettings, pull_name_of
from core.endpoints.http_wire import (
    MAX_LISTING_BYTES,
    HttpResponseRecord,
    content_disposition,
    file_info,
    join_url,
    map_httpx_error,
    parse_time,
    public_url,
    status_error,
)
from core.endpoints.http_wire import RedirectRefused as RedirectRefused  # where it was always imported from
from core.endpoints.settings import EndpointSettings


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
        self.requests = HttpRequests(
            headers=self.headers,
            secret_headers=self.secrets.request_headers(),
            own_urls=[
                u for u in (self.url, self.list_url, self.pull_url, self.download_url, self.delete_url) if u
            ],
            follow_redirects=self.follow_redirects,
            verify=self.verify,
            timeout=self.timeout,
            scrubber=lambda: self.scrubber,
        )
        self.last_response: HttpResponseRecord | None = None
        self._listed_urls: dict[str, str] = {}

    @property
    def client(self) -> httpx.Client:
        """The httpx client (core/endpoints/http_requests.py), made on first use."""
        return self.requests.client

    def close(self) -> None:
        self.requests.close()

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

    def _fail(self, method: str, url: str, response: httpx.Response, what: str) -> EndpointError:
        """The error for an unwanted answer (the response is consumed and closed)."""
        try:
            with self.errors(what, url):
                record = self.requests.record(method, url, response)
        finally:
            response.close()
        return status_error(record, what)

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
            headers = {"Content-Length": str(size), "Content-Disposition": content_disposition(name)}
            if not any(k.lower() == "content-type" for k in self.headers):
                headers["Content-Type"] = "application/octet-stream"
            send = {"content": _iter_file(body)}
        with self.errors(what, url):
            response = self.requests.send(self.method, url, headers=headers, omit=omit, follow=False, **send)
            try:
                record = self.requests.record(self.method, url, response)
            finally:
                response.close()
        self.last_response = record
        if record.status not in self.success_codes:
            error = status_error(record, what, push=True)
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
            response = self.requests.send("GET", request_url, headers={"Accept": "application/json"})
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
            modified=parse_time(item.get("modified", item.get("mtime"))),
            etag=str(etag).strip('"') if etag else None,
        )

    def stat(self, path: str) -> FileInfo:
        rel = clean_path(path)
        url = self.file_url(rel)
        what = public_url(url)
        with self.errors(what, url):
            response = self.requests.send("HEAD", url, named_by=self._named_by(rel))
            response.close()
        status, headers = response.status_code, response.headers
        if response.is_success and "content-length" in headers:
            return file_info(rel, headers, int(headers["content-length"]))
        if self.list_url and (response.is_success or status in (405, 501)):
            # HEAD not supported, or no size: the listing knows.
            for info in self._list(posixpath.dirname(rel), self.list_url):
                if info.path == rel:
                    return info
            raise NotFound(f"{what}: not in the listing")
        if response.is_success or status in (405, 501):
            # No listing to ask: the headers of a GET whose body is not read.
            with self.errors(what, url):
                response = self.requests.send("GET", url, named_by=self._named_by(rel))
            if not response.is_success:
                raise self._fail("GET", url, response, what)
            response.close()
            length = response.headers.get("content-length")
            return file_info(rel, response.headers, int(length) if length and length.isdigit() else -1)
        raise status_error(HttpResponseRecord("HEAD", public_url(url), status, response.reason_phrase), what)

    def open_read(self, path: str) -> BinaryIO:
        rel = clean_path(path)
        url = self.file_url(rel)
        what = public_url(url)
        with self.errors(what, url):
            response = self.requests.send("GET", url, named_by=self._named_by(rel))
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
            response = self.requests.send(self.delete_method, url, follow=False)
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
            response = self.requests.send("HEAD", self.url)
            response.close()
        if response.status_code in (401, 403):
            record = HttpResponseRecord("HEAD", what, response.status_code, response.reason_phrase)
            raise status_error(record, what)
