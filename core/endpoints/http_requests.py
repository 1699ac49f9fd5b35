"""How an http endpoint sends each request: one httpx client, made on first use, whose every
connection is checked against the network policy (core/netpolicy.py); the endpoint's headers, and
its credentials only to its own origins; redirects followed by hand, only as `follow_redirects`
allows and never into a range the endpoint's own URLs are not in; answers recorded without secrets.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from core.endpoints.base import ConfigError, EndpointError
from core.endpoints.http_wire import (
    EXCERPT_BYTES,
    MAX_REDIRECTS,
    RECORDED_HEADERS,
    HttpResponseRecord,
    RedirectRefused,
    host_of,
    origin_of,
    public_url,
)
from core.netpolicy import (
    NON_PUBLIC_KINDS,
    HostNotResolved,
    UrlNotAllowed,
    check_url,
    guarded_transport,
    host_kinds,
)
from core.redact import Scrubber


class HttpRequests:
    def __init__(
        self,
        *,
        headers: dict[str, str],
        secret_headers: dict[str, str],
        own_urls: Iterable[str],
        follow_redirects: str,
        verify: bool | str,
        timeout: float,
        scrubber: Callable[[], Scrubber],
    ) -> None:
        self.headers = headers
        self._secret_headers = secret_headers
        self._own_origins = frozenset(origin_of(url) for url in own_urls)
        self.follow_redirects = follow_redirects
        self.verify = verify
        self.timeout = timeout
        self._scrubber = scrubber
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

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
        # URL that passed `check_hop` cannot be re-resolved into a range (DNS rebinding) the
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

    def send(
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
        if named_by is not None and host_of(url) != host_of(named_by):
            self.check_hop(named_by, url, "the listing names a file at", same_host_only=False)
        extra = headers or {}
        configured = {k: v for k, v in self.headers.items() if k.lower() not in omit}
        start = url
        for _ in range(MAX_REDIRECTS + 1):
            credentials = self._secret_headers if origin_of(url) in self._own_origins else {}
            sending = {**configured, **credentials, **extra}
            request = self.client.build_request(method, url, headers=sending, **body)
            response = self.client.send(request, stream=True)
            if not (follow and response.is_redirect and "location" in response.headers):
                return response
            response.close()
            target = urljoin(str(response.url), response.headers["location"])
            self.check_hop(start, target, f"HTTP {response.status_code} redirect to")
            url = target
        raise EndpointError(f"{public_url(start)}: more than {MAX_REDIRECTS} redirects")

    def check_hop(self, start: str, target: str, how: str, *, same_host_only: bool = True) -> None:
        """May a request that began at `start` (our URL) go on to `target`, which the server named?
        Raises RedirectRefused saying why not."""
        shown = f"{public_url(start)}: {how} {public_url(target)}"
        if self.follow_redirects == "none" and same_host_only:
            raise RedirectRefused(
                f"{shown}, not followed: this endpoint follows no redirects "
                "(follow_redirects: same-host or any allows them)"
            )
        if self.follow_redirects != "any" and host_of(target) != host_of(start):
            raise RedirectRefused(
                f"{shown}, another host: refused (follow_redirects: any allows other hosts)"
            )
        if urlsplit(start).scheme == "https" and urlsplit(target).scheme != "https":
            raise RedirectRefused(f"{shown}: refused, it leaves HTTPS")
        if "@" in urlsplit(target).netloc:
            raise RedirectRefused(f"{shown}: refused, it carries user:password@")
        try:
            own_kinds = host_kinds(host_of(start))
            check_url(target, own_kinds)
        except UrlNotAllowed as exc:
            raise RedirectRefused(
                f"{shown}: refused, {exc.reason} "
                "(an endpoint reaches no non-public range its own URL is not in)"
            ) from None

    def record(self, method: str, url: str, response: httpx.Response) -> HttpResponseRecord:
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
            name: self._scrubber().text(response.headers[name][:256])
            for name in RECORDED_HEADERS
            if name in response.headers
        }
        return HttpResponseRecord(
            method=method,
            url=public_url(url),
            status=response.status_code,
            reason=response.reason_phrase,
            headers=headers,
            body=self._scrubber().text(body.decode("utf-8", "replace")),
            body_truncated=truncated,
        )
