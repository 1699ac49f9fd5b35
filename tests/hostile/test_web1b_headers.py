"""api/web/headers.py: the security headers every web page gets, served by uvicorn as `up` serves the
API (`uvicorn_config`), here around a small app with the kinds of answer the web gives: a page, a
JSON answer, a page that sets its own policy (a download), a stylesheet."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from api.web.headers import SecurityHeaders
from core.config import Settings
from tests.hostile.test_forwarded_headers import serve

SCRIPT_DIRECTIVES = ("default-src", "script-src", "script-src-elem", "script-src-attr")


async def page(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>t</title><p>hello")


async def data(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def download(request: Request) -> Response:
    return Response(
        b"<script>alert(1)</script>",
        media_type="text/html",
        headers={"Content-Security-Policy": "default-src 'none'; sandbox", "Cache-Control": "private"},
    )


def app() -> SecurityHeaders:
    routes = [Route("/portal", page), Route("/api/x", data), Route("/portal/files/1/content", download)]
    return SecurityHeaders(Starlette(routes=routes))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    # 127.0.0.1 named as a proxy, so a test can say the request came in over HTTPS.
    with serve(Settings(forwarded_allow_ips="127.0.0.1"), app()) as served:
        yield served


def policy(answer: httpx.Response) -> dict[str, str]:
    parsed = {}
    for part in answer.headers["content-security-policy"].split(";"):
        name, _, value = part.strip().partition(" ")
        parsed[name] = value
    return parsed


def test_a_page_gets_a_strict_policy_and_cannot_be_framed(url: str) -> None:
    answer = httpx.get(f"{url}/portal")
    csp = policy(answer)
    for directive in SCRIPT_DIRECTIVES:
        assert "'unsafe-inline'" not in csp.get(directive, ""), directive
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'"
    assert csp["script-src-attr"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["base-uri"] == "'none'" and csp["form-action"] == "'self'" and csp["object-src"] == "'none'"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert answer.headers["cross-origin-opener-policy"] == "same-origin"
    assert answer.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in answer.headers  # plain HTTP


def test_over_https_a_page_also_gets_hsts(url: str) -> None:
    answer = httpx.get(f"{url}/portal", headers={"X-Forwarded-Proto": "https"})
    assert answer.headers["strict-transport-security"] == "max-age=15552000"


def test_a_json_answer_gets_nosniff_only(url: str) -> None:
    answer = httpx.get(f"{url}/api/x")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in answer.headers and "x-frame-options" not in answer.headers


def test_a_policy_the_route_set_itself_is_kept(url: str) -> None:
    answer = httpx.get(f"{url}/portal/files/1/content")
    assert answer.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert answer.headers["cache-control"] == "private"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
