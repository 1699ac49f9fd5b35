"""The console's partner and audit pages through a real uvicorn server (tests/console_server.py):
an operator adds a partner with limits and an allow-list, changes them, sets its password and a
key, disables and enables it, removes it; the partner logs in over REST with what was set; the
audit page shows who did it and from where; a read-only user sees and changes nothing."""

from __future__ import annotations

import re

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from core.db import session_scope
from core.partners import get
from tests.console_server import ConsoleServer, console_server, main_of, own_csrf
from tests.tenancy import home_scope
from tests.web_form_reader import read_page

__all__ = ["console_server"]

PASSWORD = "a long partner Pass-41"


def text_of(response: httpx.Response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


def post_form(
    browser: httpx.Client, page: httpx.Response, action: str, typed: dict[str, str]
) -> httpx.Response:
    return browser.post(action, data=read_page(page.text, action).submit(typed))


def public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return (
        key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        + " ops@x"
    )


def api_login(server: ConsoleServer, name: str, password: str) -> int:
    answer = httpx.post(
        f"{server.url}/api/authentication",
        data={"grant_type": "password", "username": name, "password": password},
    )
    return answer.status_code


def test_an_operator_manages_a_partner(console_server: ConsoleServer) -> None:
    with console_server.browser("operator") as browser:
        listing = browser.get("/console/partners")
        assert "No partners yet" in text_of(listing)
        added = post_form(
            browser,
            listing,
            "/console/partners",
            {
                "name": "acme",
                "password": PASSWORD,
                "email": "ops@acme.example",
                "allowed_networks": "127.0.0.1\n10.0.0.0/8",
                "max_file_bytes": "50MiB",
                "max_sessions": "3",
            },
        )
        assert added.status_code == 303, added.text
        page = browser.get(added.headers["location"])
        assert "Added acme." in text_of(page) and PASSWORD not in page.text
        assert "127.0.0.1/32, 10.0.0.0/8" in text_of(page) and "52428800" in page.text
        assert api_login(console_server, "acme", PASSWORD) == 200

        key = public_key()
        assert post_form(browser, page, "/console/partners/acme/keys", {"key": key}).status_code == 303
        changed = post_form(
            browser, page, "/console/partners/acme/settings", {"allowed_networks": "192.0.2.0/24"}
        )
        assert changed.status_code == 303
        with session_scope() as session:
            partner = get(session, home_scope(session), "acme")
            assert partner is not None
            assert partner.allowed_networks == ["192.0.2.0/24"] and partner.ssh_public_keys == [key]
        assert api_login(console_server, "acme", PASSWORD) != 200  # 127.0.0.1 is no longer allowed
        post_form(browser, page, "/console/partners/acme/settings", {"allowed_networks": ""})

        weak = post_form(browser, page, "/console/partners/acme/password", {"password": "short"})
        assert weak.status_code == 400 and "too short" in text_of(weak)
        assert read_page(weak.text, "/console/partners/acme/password").by_name()["password"].value == ""
        new_password = "another long Pass-42"
        assert (
            post_form(
                browser, page, "/console/partners/acme/password", {"password": new_password}
            ).status_code
            == 303
        )
        assert api_login(console_server, "acme", new_password) == 200

        page = browser.get("/console/partners/acme")
        assert post_form(browser, page, "/console/partners/acme/disable", {}).status_code == 303
        assert "(disabled)" in text_of(browser.get("/console/partners/acme"))
        assert api_login(console_server, "acme", new_password) != 200
        page = browser.get("/console/partners/acme")
        assert post_form(browser, page, "/console/partners/acme/enable", {}).status_code == 303
        assert api_login(console_server, "acme", new_password) == 200

        audit = browser.get("/console/audit", params={"partner": "acme"})
        shown = text_of(audit)
        assert "user:operator@console.test partner.add acme" in shown
        assert "partner.key.add" in shown and "127.0.0.1" in shown  # from where
        assert PASSWORD not in audit.text and new_password not in audit.text

        page = browser.get("/console/partners/acme")
        assert post_form(browser, page, "/console/partners/acme/remove", {}).status_code == 303
        listing = text_of(browser.get("/console/partners"))
        assert "Removed acme." in listing and "No partners yet" in listing


def test_bad_partner_input_is_refused_with_the_cores_words(console_server: ConsoleServer) -> None:
    with console_server.browser("operator") as browser:
        listing = browser.get("/console/partners")
        refused = post_form(
            browser, listing, "/console/partners", {"name": "bad-size", "max_file_bytes": "lots"}
        )
        assert refused.status_code == 400 and "largest file" in text_of(refused)
        refused = post_form(
            browser, listing, "/console/partners", {"name": "bad-net", "allowed_networks": "nowhere"}
        )
        assert refused.status_code == 400
        assert read_page(refused.text, "/console/partners").by_name()["allowed_networks"].value == "nowhere"
        with session_scope() as session:
            assert get(session, home_scope(session), "bad-size") is None
            assert get(session, home_scope(session), "bad-net") is None


def test_a_read_only_user_cannot_change_partners(console_server: ConsoleServer) -> None:
    with console_server.browser("operator") as operator:
        listing = operator.get("/console/partners")
        post_form(operator, listing, "/console/partners", {"name": "ro-partner", "password": PASSWORD})
        csrf = read_page(listing.text, "/console/partners").by_name()["csrf"].value
    with console_server.browser("read-only") as reader:
        csrf = own_csrf(reader)  # its own valid CSRF pair: only the role stops it
        page = reader.get("/console/partners/ro-partner")
        assert page.status_code == 200 and "<form" not in page.text.split("</nav>", 1)[1]
        assert "<form" not in main_of(reader.get("/console/partners").text)
        for action in ("password", "settings", "keys", "disable", "unlock", "remove", "keys/1/remove"):
            answer = reader.post(
                f"/console/partners/ro-partner/{action}", data={"csrf": csrf, "password": "x" * 20}
            )
            assert answer.status_code == 403, action
        assert reader.post("/console/partners", data={"csrf": csrf, "name": "ro-new"}).status_code == 403
    assert api_login(console_server, "ro-partner", PASSWORD) == 200
