"""The console's concurrency limits through a real uvicorn server (tests/console_server.py): an
operator sets a partner's limit in its settings form and an endpoint's in its page's own form, sees
them shown, takes them back to unlimited; a bad value is refused in words, nothing stored."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from core import partners
from core.db import session_scope
from core.endpoints import rows as endpoint_rows
from tests.console_server import ConsoleServer, console_server
from tests.file_roots import home_files
from tests.tenancy import home_scope
from tests.web_form_reader import read_page

__all__ = ["console_server", "home_files"]

PASSWORD = "a long partner Pass-41"


def text_of(response: httpx.Response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


def post_form(
    browser: httpx.Client, page: httpx.Response, action: str, typed: dict[str, str]
) -> httpx.Response:
    return browser.post(action, data=read_page(page.text, action).submit(typed))


def limits(partner: str, endpoint: str) -> tuple[int | None, int | None]:
    with session_scope() as session:
        scope = home_scope(session)
        p, e = partners.get(session, scope, partner), endpoint_rows.get(session, scope, endpoint)
        assert p is not None and e is not None
        return p.max_concurrent, e.max_concurrent


def test_an_operator_sets_and_removes_limits(console_server: ConsoleServer, home_files: Path) -> None:
    with console_server.browser("operator") as browser:
        listing = browser.get("/console/partners")
        typed = {"name": "conc", "password": PASSWORD, "max_concurrent": "2"}
        assert post_form(browser, listing, "/console/partners", typed).status_code == 303
        new = browser.get("/console/endpoints/new", params={"type": "file"})
        typed = {"name": "conc-out", "setting.path": str(home_files)}
        assert post_form(browser, new, "/console/endpoints", typed).status_code == 303
        assert limits("conc", "conc-out") == (2, None)

        page = browser.get("/console/partners/conc")
        assert "Files carried at once 2" in text_of(page)
        changed = post_form(browser, page, "/console/partners/conc/settings", {"max_concurrent": "5"})
        assert changed.status_code == 303
        shown = browser.get("/console/endpoints/conc-out")
        assert "files carried at once unlimited" in text_of(shown)
        saved = post_form(browser, shown, "/console/endpoints/conc-out/concurrency", {"max_concurrent": "1"})
        assert saved.status_code == 303
        assert limits("conc", "conc-out") == (5, 1)
        assert "files carried at once 1" in text_of(browser.get("/console/endpoints/conc-out"))

        refused = post_form(
            browser, shown, "/console/endpoints/conc-out/concurrency", {"max_concurrent": "-4"}
        )
        assert refused.status_code == 400 and "concurrency limit" in text_of(refused)
        page = browser.get("/console/partners/conc")
        refused = post_form(browser, page, "/console/partners/conc/settings", {"max_concurrent": "many"})
        assert refused.status_code == 400 and "concurrency limit" in text_of(refused)
        assert limits("conc", "conc-out") == (5, 1)

        page = browser.get("/console/partners/conc")
        assert (
            post_form(browser, page, "/console/partners/conc/settings", {"max_concurrent": ""}).status_code
            == 303
        )
        shown = browser.get("/console/endpoints/conc-out")
        cleared = post_form(
            browser, shown, "/console/endpoints/conc-out/concurrency", {"max_concurrent": "0"}
        )
        assert cleared.status_code == 303
        assert limits("conc", "conc-out") == (None, None)
