"""The console served as `tradelane up` serves the API (tests/web/server.py: api/server.py's uvicorn
config, a real uvicorn server), with users logging in for real: `ConsoleServer.browser("operator")`
is a browser (cookies kept, `Origin` and `Sec-Fetch-Site: same-origin` sent, as Chromium does for our
forms) logged in through `/login` as that role's user of the home account (`<role>@console.test`,
added the first time it is asked for)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.web.auth import SESSION_COOKIE
from core import accounts
from core.db import session_scope
from tests.b2b.web_server import forms_of
from tests.tenancy import home_scope
from tests.web.server import WebServer, web_server

PASSWORD = "console-Pass-2026-long"


def user_of(role: str) -> str:
    return f"{role}@console.test"


@dataclass
class ConsoleServer:
    url: str
    home: Path
    web: WebServer

    @contextmanager
    def browser(self, role: str = "operator") -> Iterator[httpx.Client]:
        """A browser logged in as the home account's `role` user."""
        email = user_of(role)
        with session_scope() as session:
            scope = home_scope(session)
            if email not in {user.email for user in accounts.list_users(session, scope)}:
                accounts.add_user(session, scope, email, password=PASSWORD, role=role)
        with self.web.browser() as client:
            form = forms_of(client.get("/login"))["/login"]
            answer = client.post("/login", data={**form, "name": email, "password": PASSWORD})
            assert answer.status_code == 303 and SESSION_COOKIE in client.cookies, answer.text
            yield client


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    with web_server(tmp_path_factory.mktemp("console")) as running:
        yield ConsoleServer(running.url, running.home, running)


def own_csrf(browser: httpx.Client) -> str:
    """The browser's own valid CSRF field (of its session's pages: the logout form every page has)."""
    page = browser.get("/console")
    return forms_of(page)["/logout"]["csrf"]


def main_of(html: str) -> str:
    """A page's own part (after the layout's header, whose nav holds the logout form and menu button)."""
    return html.split("<main", 1)[1]
