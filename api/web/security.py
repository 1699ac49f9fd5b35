"""The accept page's defences: headers, CSRF, the Origin check, bounded form bodies, the login cookie.

* Every answer carries a strict CSP (no scripts at all; styles from this origin only), no referrer
  (the token is in the page's URL), `no-store`, `nosniff`, and may not be framed: api/web/headers.py.
* CSRF, signed double submit: every page view sets the cookie `tl_csrf` (random, HttpOnly,
  SameSite=Strict, Path=/connect) unless it holds one already, and every form carries
  `HMAC(web key, "csrf:" + tl_csrf)`. A POST needs both, matching (constant time): a site that
  cannot read our cookie cannot make the field, and SameSite=Strict keeps the cookie off
  cross-site posts anyway. This also stops login CSRF (the cookie predates the login), and
  logging in or out renews the cookie, so a pair known before (planted from a sibling host) dies.
* Origin: a POST that names an Origin must name the public URL's (TRADELANE_PUBLIC_URL).
* Forms are `application/x-www-form-urlencoded` only and at most FORM_LIMIT bytes, read with a
  running count (a body without Content-Length cannot grow past it either).
* The login cookie `tl_web` is an HS256 JWT (`typ: "web"`, 30 minutes) signed with a key derived
  from the secret key, as API tokens are, but not the same key: one is never taken for the other.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.requests import Request
from starlette.responses import Response

from core.config import get_settings
from core.crypto import secret_key

CSRF_COOKIE = "tl_csrf"
LOGIN_COOKIE = "tl_web"
COOKIE_PATH = "/connect"
LOGIN_SECONDS = 30 * 60
FORM_LIMIT = 16 * 1024
MAX_FIELDS = 20
FORM_EXPIRED = "the form expired or came from another site: reload the page"
WEB_TOKEN_TYPE = "web"


class FormRefused(Exception):
    """A POST refused before anything it asks is done."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def web_key() -> bytes:
    return hmac.new(secret_key(), b"tradelane-web", hashlib.sha256).digest()


def _cookie_secure() -> bool:
    return get_settings().public_base_url.startswith("https://")


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


def set_csrf_cookie(response: Response, cookie: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, cookie, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_cookie_secure()
    )


def check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() != get_settings().public_origin:
        raise FormRefused(403, FORM_EXPIRED)


def check_csrf(request: Request, form: dict[str, str]) -> None:
    cookie = csrf_cookie(request)
    sent = form.get("csrf", "")
    if cookie is None or not sent or not hmac.compare_digest(sent.encode(), csrf_field(cookie).encode()):
        raise FormRefused(403, FORM_EXPIRED)


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


# --- the login cookie ------------------------------------------------------------------------


def login_cookie_value(subject: str) -> str:
    issued = time.time()
    claims = {"sub": subject, "iat": int(issued), "exp": int(issued) + LOGIN_SECONDS, "at": issued}
    claims["typ"] = WEB_TOKEN_TYPE
    return jwt.encode(claims, web_key(), algorithm="HS256")


def set_login_cookie(response: Response, subject: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        login_cookie_value(subject),
        max_age=LOGIN_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(),
    )


def clear_login_cookie(response: Response) -> None:
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def login_claims(request: Request) -> tuple[str, datetime] | None:
    """(subject, issued at) of a valid login cookie, else None."""
    value = request.cookies.get(LOGIN_COOKIE)
    if not value:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            value, web_key(), algorithms=["HS256"], options={"require": ["sub", "exp", "iat"]}
        )
    except jwt.InvalidTokenError:
        return None
    subject, at = claims.get("sub"), claims.get("at", claims.get("iat"))
    if claims.get("typ") != WEB_TOKEN_TYPE or not isinstance(subject, str) or not isinstance(at, int | float):
        return None
    return subject, datetime.fromtimestamp(float(at), UTC)
