"""Hostile use of the console (api/web/console), through a real uvicorn server: every changing route
refuses a read-only login (found by walking the router, so a new route is covered the day it is
added), nothing is changed by it; a file name with markup is shown as text; every page carries the
web's headers and labels every field; without a login nothing opens."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlmodel import func, select

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


# What any logged-in user may do to its own login, whatever its role (tested on its own).
SELF_SERVICE = {"/console/logout-everywhere"}


def _changing_routes() -> list[str]:
    """Every POST path of the console, with its parameters filled in with existing objects (and
    each action an `{action}` route takes: its module's ACTIONS)."""
    filled = {
        "{name}": "h-thing",
        "{transfer_id}": "1",
        "{number}": "1",
        "{email}": "h@console.example",
        "{connection_id}": "1",
    }
    paths = []
    for route in _routes(console_router.routes):
        if "POST" not in route.methods or route.path in SELF_SERVICE:
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
    # endpoints (with their concurrency limit), partners, flows, transfers, users, connections:
    # a route lost shows here
    assert len(paths) == 32, paths
    with console_server.browser("read-only") as reader:
        # The reader's own valid CSRF pair (its page's logout form): only the role stops it.
        csrf = read_page(reader.get("/console/partners").text, "/logout").by_name()["csrf"].value
        before = _events()  # after its login (audited)
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
    "/console/connections",
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
    found = read_page(page.text)
    assert found.fields, "a page with nothing to fill in?"
    assert found.unlabelled() == [], path
    assert re.search(r"<html lang=\"en\">", page.text)


def test_without_a_login_nothing_opens(console_server: ConsoleServer, things: int) -> None:
    """No session: every page sends the browser to /login (and back after it), a script gets 401;
    every changing route refuses a post without the CSRF token (403) and, with a valid token but
    no session, 401: nothing is done either way."""
    before = _events()
    with console_server.web.browser() as browser:
        for path in PAGES:
            answer = browser.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next=/console"), path
            assert browser.get(path, headers={"Accept": "application/json"}).status_code == 401, path
        for path in _changing_routes():
            assert browser.post(path, data={"csrf": "x"}).status_code == 403, path
        csrf = read_page(browser.get("/login").text, "/login").by_name()["csrf"].value
        for path in _changing_routes():
            assert browser.post(path, data={"csrf": csrf}).status_code == 401, path
    assert _events() == before


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
