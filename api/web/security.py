"""The web pages' defences against other sites: CSRF, Origin and Sec-Fetch-Site, bounded form bodies.

* Every answer carries a strict CSP, `no-store`, `nosniff`, and may not be framed: api/web/headers.py.
* CSRF, signed double submit: every page view sets the cookie `tl_csrf` (random, HttpOnly,
  SameSite=Strict, Path=/) unless it holds one already, and every form carries
  `HMAC(web key, "csrf:" + tl_csrf)` (a script sends it as the `X-CSRF-Token` header). An unsafe
  request needs both, matching (constant time): a site that cannot read our cookie cannot make the
  field, and SameSite=Strict keeps the cookie off cross-site posts anyway. This also stops login
  CSRF (the cookie predates the login), and logging in or out renews the cookie, so a pair known
  before (planted from a sibling host) dies.
* Origin: an unsafe request that names an Origin must name the public URL's (TRADELANE_PUBLIC_URL);
  one whose `Sec-Fetch-Site` says it came from another origin (`same-site` included: a sibling
  port or host is another origin) is refused whatever it carries (`check_unsafe`).
* Forms are `application/x-www-form-urlencoded` only and at most FORM_LIMIT bytes (larger limits
  for the console's forms), read with a running count (a body without Content-Length cannot grow
  past it either).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from core.config import get_settings
from core.crypto import secret_key

CSRF_COOKIE = "tl_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/"
FORM_LIMIT = 16 * 1024
MAX_FIELDS = 20
FORM_EXPIRED = "the form expired or came from another site: reload the page"


class FormRefused(Exception):
    """A POST refused before anything it asks is done."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def web_key() -> bytes:
    return hmac.new(secret_key(), b"tradelane-web", hashlib.sha256).digest()


def _cookie_secure(request: Request | None = None) -> bool:
    """Whether cookies get `Secure`: the request came over HTTPS (directly, or through a trusted
    proxy's X-Forwarded-Proto), or the public URL is https."""
    https = request is not None and request.url.scheme == "https"
    return https or get_settings().public_base_url.startswith("https://")


secure_cookie = _cookie_secure


# --- CSRF ------------------------------------------------------------------------------------


def csrf_cookie(request: Request) -> str | None:
    value = request.cookies.get(CSRF_COOKIE)
    # Ours are 22 url-safe characters; anything else is ignored (and replaced on the next page).
    if value is None or not (16 <= len(value) <= 64) or not value.replace("-", "").replace("_", "").isalnum():
        return None
    return value


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(16)


def csrf_field(cookie: str) -> str:
    """The value every form carries for this cookie."""
    return hmac.new(web_key(), b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()


def set_csrf_cookie(response: Response, cookie: str, request: Request | None = None) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        cookie,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
    )


# What a browser's Sec-Fetch-Site may say on a request of ours: the page itself, or the user typing.
SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})


def check_origin(request: Request) -> None:
    """Refuse a request that another origin made: its `Origin` (when sent) is not the public URL's,
    or its `Sec-Fetch-Site` (when sent) is not same-origin."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() != get_settings().public_origin:
        raise FormRefused(403, FORM_EXPIRED)
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in SAME_ORIGIN_FETCH:
        raise FormRefused(403, FORM_EXPIRED)


def check_csrf_value(request: Request, sent: str) -> None:
    cookie = csrf_cookie(request)
    if cookie is None or not sent or not hmac.compare_digest(sent.encode(), csrf_field(cookie).encode()):
        raise FormRefused(403, FORM_EXPIRED)


def check_csrf(request: Request, form: dict[str, str]) -> None:
    check_csrf_value(request, form.get(CSRF_FIELD, ""))


def check_unsafe(request: Request, form: dict[str, str] | None = None) -> None:
    """Every unsafe request of the web (POST, PUT, PATCH, DELETE): from our own origin, and carrying
    the CSRF token for its `tl_csrf` cookie, in the form's `csrf` field or the X-CSRF-Token header."""
    check_origin(request)
    sent = form.get(CSRF_FIELD, "") if form is not None else ""
    check_csrf_value(request, sent or request.headers.get(CSRF_HEADER, ""))


# --- bounded forms ---------------------------------------------------------------------------


async def read_form(
    request: Request, *, limit: int = FORM_LIMIT, max_fields: int = MAX_FIELDS
) -> dict[str, str]:
    """The posted fields (each name once), refusing other encodings, bodies past `limit` bytes and
    more than `max_fields` fields (the console's endpoint form passes larger bounds)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormRefused(415, "send the form as the page does (application/x-www-form-urlencoded)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise FormRefused(413, f"the form is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise FormRefused(413, f"the form is larger than {limit} bytes")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=max_fields
        )
    except (UnicodeDecodeError, ValueError):
        raise FormRefused(400, "the form could not be read") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form or "\x00" in value:
            raise FormRefused(400, "the form could not be read")
        form[name] = value
    return form
