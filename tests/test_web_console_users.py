"""The console's user pages (admins only) through a real uvicorn server: an admin adds users, changes
a role and a password, disables and enables one, is refused removing the last admin (core's rule
and words); the users log in over REST with what was set; an operator is refused the pages."""

from __future__ import annotations

import re

import httpx

from tests.console_server import ConsoleServer, console_server
from tests.web_form_reader import read_page

__all__ = ["console_server"]

PASSWORD = "a long user Pass-51"


def text_of(response: httpx.Response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


def post_form(
    browser: httpx.Client, page: httpx.Response, action: str, typed: dict[str, str]
) -> httpx.Response:
    return browser.post(action, data=read_page(page.text, action).submit(typed))


def login(server: ConsoleServer, email: str, password: str) -> int:
    form = {"grant_type": "password", "username": email, "password": password}
    return httpx.post(f"{server.url}/api/authentication", data=form).status_code


def test_an_admin_manages_the_accounts_users(console_server: ConsoleServer) -> None:
    with console_server.browser("admin") as admin:
        listing = admin.get("/console/users")
        assert listing.status_code == 200
        typed = {"email": "boss@acme.example", "password": PASSWORD, "role": "admin"}
        assert post_form(admin, listing, "/console/users", typed).status_code == 303
        typed = {"email": "op@acme.example", "password": PASSWORD, "role": "operator"}
        assert post_form(admin, listing, "/console/users", typed).status_code == 303
        listing = admin.get("/console/users")
        assert "boss@acme.example admin active" in text_of(listing) and PASSWORD not in listing.text
        assert login(console_server, "op@acme.example", PASSWORD) == 200

        op = "/console/users/op%40acme.example"
        assert post_form(admin, listing, f"{op}/role", {"role": "read-only"}).status_code == 303
        assert "op@acme.example read-only" in text_of(admin.get("/console/users"))
        weak = post_form(admin, listing, f"{op}/password", {"password": "short"})
        assert weak.status_code == 400 and "too short" in text_of(weak) and 'short"' not in weak.text
        assert post_form(admin, listing, f"{op}/disable", {}).status_code == 303
        assert login(console_server, "op@acme.example", PASSWORD) != 200
        listing = admin.get("/console/users")
        assert post_form(admin, listing, f"{op}/enable", {}).status_code == 303
        assert login(console_server, "op@acme.example", PASSWORD) == 200

        # boss is not the last admin (the one logged in is): removed; then the last one stays.
        assert post_form(admin, listing, "/console/users/boss%40acme.example/remove", {}).status_code == 303
        last = post_form(admin, listing, "/console/users/admin%40console.test/remove", {})
        assert last.status_code == 409 and "last admin" in text_of(last)
        assert post_form(admin, listing, f"{op}/remove", {}).status_code == 303
        listing = text_of(admin.get("/console/users"))
        assert "Removed op@acme.example." in listing  # the flash, once
        assert "op@acme.example" not in text_of(admin.get("/console/users"))


def test_only_admins_manage_users(console_server: ConsoleServer) -> None:
    with console_server.browser("operator") as operator:
        refused = operator.get("/console/users")
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        assert 'href="/console/users"' not in operator.get("/console/partners").text  # not in the nav
