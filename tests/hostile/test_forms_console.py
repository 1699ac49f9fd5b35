"""Hostile use of the console (api/web/console), through a real uvicorn server: every changing route
refuses a read-only login (found by walking the router, so a new route is covered the day it is
added), nothing is changed by it; a file name with markup is shown as text; every page carries the
web's headers and labels every field; without a login (the placeholder dependency) nothing opens."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlmodel import func, select

from api.app import create_app
from api.web.console import router as console_router
from core.db import session_scope
from core.models import AuditEvent
from tests.console_server import ConsoleServer, console_server
from tests.derived.support import add_dir_endpoint, add_flow, add_partner, receive
from tests.web_form_reader import read_page

__all__ = ["console_server"]


def _routes(routes: list[Any]) -> list[APIRoute]:
    """The routes of a router and of the routers it includes (sub-routers carry their prefixes)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        else:
            found += _routes(route.original_router.routes)
    return found


def _changing_routes() -> list[str]:
    """Every POST path of the console, with its parameters filled in with existing objects (and
    each action an `{action}` route takes: its module's ACTIONS)."""
    filled = {"{name}": "h-thing", "{transfer_id}": "1", "{number}": "1", "{email}": "h@console.example"}
    paths = []
    for route in _routes(console_router.routes):
        if "POST" not in route.methods:
            continue
        path = route.path
        for hole, value in filled.items():
            path = path.replace(hole, value)
        actions = importlib.import_module(route.endpoint.__module__).ACTIONS if "{action}" in path else [""]
        paths += [path.replace("{action}", action) for action in actions]
    return paths


def _events() -> int:
    with session_scope() as session:
        return int(session.exec(select(func.count()).select_from(AuditEvent)).one())


@pytest.fixture(scope="module")
def things(console_server: ConsoleServer, tmp_path_factory: pytest.TempPathFactory) -> int:
    """A partner, an endpoint and a data flow named h-thing, and a transfer of a file whose name
    holds markup; its id."""
    out = tmp_path_factory.mktemp("hostile-console")
    add_partner("h-thing")
    add_dir_endpoint("h-thing", out)
    flow_id = add_flow("h-thing", "h-thing", "h-thing")
    return receive("h-thing", 'b<img src=x onerror="alert(1)"><script>.txt', b"x\n", flow_id)


def test_every_changing_route_refuses_a_read_only_login(console_server: ConsoleServer, things: int) -> None:
    paths = _changing_routes()
    assert len(paths) == 27, paths  # endpoints, partners, flows, transfers, users: a route lost shows here
    with console_server.browser("operator") as operator:
        page = operator.get("/console/partners")
        csrf = read_page(page.text, "/console/partners").by_name()["csrf"].value
        cookies = dict(operator.cookies)
    before = _events()
    with console_server.browser("read-only") as reader:
        reader.cookies.update(cookies)  # a valid CSRF pair: only the role stops it
        for path in paths:
            answer = reader.post(path, data={"csrf": csrf, "type": "file", "name": "h-new", "force": "1"})
            assert answer.status_code == 403, (path, answer.status_code, answer.text[:200])
    assert _events() == before  # nothing was done, so nothing was audited


def test_a_file_name_with_markup_is_shown_as_text(console_server: ConsoleServer, things: int) -> None:
    with console_server.browser("read-only") as reader:
        page = reader.get("/console/transfers")
        assert page.status_code == 200
        assert "<script>" not in page.text and "<img" not in page.text
        assert "b&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;.txt" in page.text


PAGES = [
    "/console/partners",
    "/console/partners/h-thing",
    "/console/endpoints",
    "/console/endpoints/h-thing",
    "/console/endpoints/new?type=http",
    "/console/flows",
    "/console/flows/h-thing",
    "/console/transfers",
    "/console/audit",
    "/console/users",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_the_web_headers_and_labels_every_field(
    console_server: ConsoleServer, things: int, path: str
) -> None:
    with console_server.browser("admin") as admin:
        page = admin.get(path)
    assert page.status_code == 200, page.text[:300]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    set_cookie = page.headers.get("set-cookie", "")
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie and "Path=/" in set_cookie
    found = read_page(page.text)
    assert found.fields, "a page with nothing to fill in?"
    assert found.unlabelled() == [], path
    assert re.search(r"<html lang=\"en\">", page.text)


async def test_without_a_login_nothing_opens(tmp_path: Path) -> None:
    """The placeholder dependency (until the web session lands) refuses every request."""
    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        for path in PAGES:
            answer = await client.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["content-type"].startswith("text/html")  # a page a person reads
            assert "log in to use the console" in answer.text and 'href="/login"' in answer.text
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        for path in _changing_routes():
            assert (await client.post(path, data={"csrf": "x"})).status_code == 401, path


def test_refusals_are_pages_under_console_and_json_elsewhere(
    console_server: ConsoleServer, things: int
) -> None:
    with console_server.browser("operator") as browser:
        missing = browser.get("/console/endpoints/no-such")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert "no endpoint named &#39;no-such&#39;" in missing.text
        assert browser.post("/console/endpoints/no-such/test", data={"x": "1"}).status_code == 403  # no CSRF
        csrf = read_page(browser.get("/console/partners").text, "/console/partners").by_name()["csrf"].value
        core_refusal = browser.post("/console/endpoints/no-such/test", data={"csrf": csrf})  # core's NotFound
        assert core_refusal.status_code == 404 and core_refusal.headers["content-type"].startswith(
            "text/html"
        )
        assert "no endpoint named &#39;no-such&#39;" in core_refusal.text
        api = browser.get("/api/folders")
        assert api.headers["content-type"].startswith("application/json")
