"""The security headers of every answer the API process gives: one pure-ASGI middleware.

* Every answer: `X-Content-Type-Options: nosniff` (Swagger UI and scripts read JSON; nothing is
  ever sniffed into a page).
* Every `text/html` answer (pages, error pages, 404s): a Content-Security-Policy without
  `'unsafe-inline'` in any script directive or `default-src` (scripts are files from this origin),
  `frame-ancestors 'none'` and `X-Frame-Options: DENY` (no clickjacking), `Referrer-Policy`,
  `Cross-Origin-Opener-Policy`, `Cache-Control: no-store` and, over HTTPS, `Strict-Transport-Security`.
* `/docs` and `/redoc` get the same policy, widened only where their vendored bundles need it
  (`docs_policy`); `/connect/*` (the invitation accept page, whose URL holds a token) sends no
  referrer and allows no script at all.

A header the route set itself (a download's own `Content-Security-Policy: sandbox`, a cacheable
page's `Cache-Control`) is kept: the middleware only adds what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The web pages' policy: scripts, styles, images and fetches from this origin only, nothing inline.
WEB_POLICY: dict[str, str] = {
    "default-src": "'none'",
    "script-src": "'self'",
    "script-src-attr": "'none'",
    "style-src": "'self'",
    "img-src": "'self'",
    "connect-src": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "object-src": "'none'",
}

# The accept page loads a stylesheet and nothing else: no script, image or fetch at all.
CONNECT_POLICY = {
    "default-src": "'none'",
    "style-src": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
}

# Swagger UI draws its icons as data: images. ReDoc styles itself with styled-components (inline
# <style>: without it ReDoc shows "Something went wrong"), searches in a blob: worker, and shows a
# logo from cdn.redoc.ly that this img-src blocks (its onError hides it). Scripts stay 'self'.
DOCS_POLICY = {**WEB_POLICY, "img-src": "'self' data:"}
REDOC_POLICY = {**DOCS_POLICY, "style-src": "'self' 'unsafe-inline'", "worker-src": "blob:"}

HSTS = "max-age=15552000"


def policy_text(policy: Mapping[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in policy.items())


def page_headers(path: str, https: bool) -> dict[str, str]:
    """The headers an HTML answer for `path` carries (unless it set them itself)."""
    if path.startswith("/connect/") or path == "/connect":
        policy, referrer = CONNECT_POLICY, "no-referrer"  # the token is in the page's URL
    elif path.startswith("/redoc"):
        policy, referrer = REDOC_POLICY, "same-origin"
    elif path.startswith("/docs"):
        policy, referrer = DOCS_POLICY, "same-origin"
    else:
        policy, referrer = WEB_POLICY, "same-origin"
    headers = {
        "Content-Security-Policy": policy_text(policy),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": referrer,
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
    if https:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def _is_html(headers: MutableHeaders) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "text/html"


class SecurityHeaders:
    """Adds the headers above to every HTTP answer of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                _add_missing(headers, {"X-Content-Type-Options": "nosniff"})
                if _is_html(headers) or path.startswith("/connect/"):
                    _add_missing(headers, page_headers(path, https))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _add_missing(headers: MutableHeaders, wanted: Mapping[str, Any]) -> None:
    for name, value in wanted.items():
        if name not in headers:
            headers[name] = value
