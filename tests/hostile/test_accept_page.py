"""Hostile requests to the invitation accept page (api/web), through a real uvicorn server.

Each refusal must change nothing: the fake AcceptService (tests/b2b/accept_fake.py) records every
call that changes something, and the invitation must still be pending afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import jwt
import pytest

from api.auth import create_access_token
from api.web.security import FORM_EXPIRED, FORM_LIMIT, MAX_FIELDS
from tests.b2b.web_server import AcceptServer, accept_server, forms_of, submit, text_of

__all__ = ["accept_server"]

PASSWORD = "a long enough password"


@dataclass(frozen=True)
class _Holder:
    uid: str
    name: str
    kind: str = "user"  # an account user's API token, the strongest forgery the page could be shown


EVIL = "https://evil.example"


def _unchanged(server: AcceptServer, token: str, changes_before: int) -> None:
    assert len(server.service.changes) == changes_before, server.service.changes[changes_before:]
    assert server.service.invitations[token].state == "pending"
    assert server.service.invitations[token].signup_account is None


def _page(server: AcceptServer, browser: httpx.Client, token: str) -> httpx.Response:
    page = browser.get(server.page_url(token))
    assert page.status_code == 200, page.text
    return page


def _refused_as_expired_form(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert FORM_EXPIRED in text_of(answer)


@pytest.mark.parametrize(
    "action", ["/connect/login", "/connect/signup", "/connect/accept", "/connect/decline"]
)
def test_a_post_without_the_csrf_field_is_refused(accept_server: AcceptServer, action: str) -> None:
    token = accept_server.service.invite()
    before = len(accept_server.service.changes)
    with accept_server.browser() as browser:
        page = _page(accept_server, browser, token)
        fields = {k: v for k, v in forms_of(page)["/connect/decline"].items() if k != "csrf"}
        _refused_as_expired_form(browser.post(action, data=fields))
    _unchanged(accept_server, token, before)


def test_a_forged_csrf_field_is_refused(accept_server: AcceptServer) -> None:
    token = accept_server.service.invite()
    before = len(accept_server.service.changes)
    with accept_server.browser() as browser:
        _page(accept_server, browser, token)
        _refused_as_expired_form(browser.post("/connect/decline", data={"csrf": "0" * 64, "token": token}))
    _unchanged(accept_server, token, before)


def test_another_visitors_csrf_pair_does_not_fit_the_victims_cookie(accept_server: AcceptServer) -> None:
    """An attacker's own valid field (from its own visit) is worthless with the victim's cookie."""
    token = accept_server.service.invite()
    before = len(accept_server.service.changes)
    with accept_server.browser() as attacker, accept_server.browser() as victim:
        attackers_form = forms_of(_page(accept_server, attacker, token))["/connect/decline"]
        _page(accept_server, victim, token)
        assert attacker.cookies["tl_csrf"] != victim.cookies["tl_csrf"]
        _refused_as_expired_form(victim.post("/connect/decline", data=attackers_form))
    _unchanged(accept_server, token, before)


def test_a_valid_field_without_its_cookie_is_refused(accept_server: AcceptServer) -> None:
    token = accept_server.service.invite()
    before = len(accept_server.service.changes)
    with accept_server.browser() as browser:
        form = forms_of(_page(accept_server, browser, token))["/connect/decline"]
    with accept_server.browser() as cookieless:
        _refused_as_expired_form(cookieless.post("/connect/decline", data=form))
    _unchanged(accept_server, token, before)


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:1", "https://127.0.0.1"])
def test_a_post_from_another_origin_is_refused_even_with_a_valid_csrf_pair(
    accept_server: AcceptServer, origin: str
) -> None:
    accept_server.service.add_user(f"{origin[-3:]}@globex.test", PASSWORD, "globex")
    token = accept_server.service.invite()
    before = len(accept_server.service.changes)
    with accept_server.browser() as browser:
        page = _page(accept_server, browser, token)
        for action in ("/connect/decline", "/connect/login"):
            fields = {**forms_of(page)[action], "email": f"{origin[-3:]}@globex.test", "password": PASSWORD}
            answer = browser.post(action, data=fields, headers={"Origin": origin})
            _refused_as_expired_form(answer)
        assert "tl_session" not in browser.cookies  # no login CSRF either
    _unchanged(accept_server, token, before)


def test_a_post_with_no_origin_header_passes_on_the_csrf_pair_alone(accept_server: AcceptServer) -> None:
    """Origin is checked when present (older clients omit it); the CSRF pair still protects."""
    token = accept_server.service.invite()
    with accept_server.browser() as browser:
        form = forms_of(_page(accept_server, browser, token))["/connect/decline"]
        del browser.headers["Origin"]
        answer = browser.post("/connect/decline", data=form)
    assert answer.status_code == 200 and "Invitation declined" in text_of(answer)


def test_get_never_uses_the_token_up(accept_server: AcceptServer) -> None:
    token = accept_server.service.invite()
    before = len(accept_server.service.changes)
    quoted = quote(token, safe="")
    with accept_server.browser() as browser:
        for _ in range(3):  # a mail scanner, a preview, the invitee
            _page(accept_server, browser, token)
        assert browser.head(accept_server.page_url(token)).status_code == 405
        for path in ("/connect/decline", "/connect/login", "/connect/signup", "/connect/logout"):
            assert browser.get(f"{path}?token={quoted}").status_code == 405
        accept_get = browser.get(f"/connect/accept?token={quoted}&name=x&outbox=y&endpoint=lake")
        assert accept_get.status_code == 200 and "/connect/login" in forms_of(accept_get)
        # A POST carrying the token only in its URL: the token comes from the form, or not at all.
        form = forms_of(_page(accept_server, browser, token))["/connect/decline"]
        answer = browser.post(f"/connect/decline?token={quoted}", data={"csrf": form["csrf"]})
        assert answer.status_code == 400 and "not an invitation token or link" in text_of(answer)
    _unchanged(accept_server, token, before)


def test_html_in_names_and_typed_values_is_escaped(accept_server: AcceptServer) -> None:
    script = "<script>alert(1)</script>"
    image = '"><img src=x onerror=alert(2)>'
    token = accept_server.service.invite(inviter=f"acme{script}", name=f"to{image}", email=f"b{image}@x.test")
    accept_server.service.add_user("mallory@globex.test", PASSWORD, "globex")
    with accept_server.browser() as browser:
        page = _page(accept_server, browser, token)
        refused = submit(
            browser, page, "/connect/login", email=f"{image}{script}", password="wrong password!"
        )
        logged_in = submit(browser, page, "/connect/login", email="mallory@globex.test", password=PASSWORD)
        accept_server.service.endpoints_of["globex"] = []
        # A refusal that quotes what was typed (the fake names the endpoint, as the core does).
        bad_choice = browser.post(
            "/connect/accept",
            data={**forms_of(logged_in)["/connect/decline"], "name": "n", "endpoint": f"lake{script}"},
        )
        reflected = browser.get("/connect/accept", params={"token": f"{script}{image}"})
    assert refused.status_code == 401 and bad_choice.status_code == 404 and reflected.status_code == 400
    for answer in (page, refused, logged_in, bad_choice, reflected):
        lowered = answer.text.lower()
        assert "<script" not in lowered and "<img" not in lowered, answer.text
    assert "acme&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "to&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page.text
    assert "lake&lt;script&gt;" in bad_choice.text
    assert forms_of(refused)["/connect/login"]["email"] == f"{image}{script}"  # kept as text, not markup


def test_an_oversized_form_is_refused_before_it_is_read_whole(accept_server: AcceptServer) -> None:
    token = accept_server.service.invite()
    before = len(accept_server.service.changes)
    with accept_server.browser() as browser:
        form = forms_of(_page(accept_server, browser, token))["/connect/decline"]
        big = {**form, "padding": "x" * FORM_LIMIT}
        declared = browser.post("/connect/decline", data=big)
        assert declared.status_code == 413 and f"larger than {FORM_LIMIT} bytes" in text_of(declared)

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, counted as it arrives
            yield f"csrf={form['csrf']}&token={token}&padding=".encode()
            for _ in range(64):
                yield b"x" * 1024

        streamed = browser.post(
            "/connect/decline",
            content=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert streamed.status_code == 413
        multipart = browser.post("/connect/decline", data=form, files={"f": ("a.txt", b"a")})
        assert multipart.status_code == 415
        many = {**form, **{f"f{i}": "1" for i in range(MAX_FIELDS)}}
        assert browser.post("/connect/decline", data=many).status_code == 400
        doubled = f"csrf={form['csrf']}&token={quote(token)}&token={quote(token)}"
        answer = browser.post(
            "/connect/decline", content=doubled, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert answer.status_code == 400
    _unchanged(accept_server, token, before)


def test_a_forged_or_foreign_login_cookie_is_no_login(accept_server: AcceptServer) -> None:
    login = accept_server.service.add_user("root@globex.test", PASSWORD, "globex")
    token = accept_server.service.invite("receive")
    before = len(accept_server.service.changes)
    now = int(time.time())
    claims = {"sub": login.subject, "iat": now, "exp": now + 600, "at": now, "typ": "web"}
    forged = [
        login.subject,  # the login's own id is not a session
        jwt.encode(claims, b"another key" * 4, algorithm="HS256"),  # the old stateless cookie's shape
        create_access_token(_Holder(login.subject, login.email))[0],  # an API token is not a page login
        "A" * 43,  # the shape of a session value, but no session
    ]
    for value in forged:
        with accept_server.browser() as browser:
            form = forms_of(_page(accept_server, browser, token))["/connect/decline"]
            browser.cookies.set("tl_session", value, path="/")
            page = _page(accept_server, browser, token)
            assert "/connect/login" in forms_of(page) and "/connect/accept" not in forms_of(page)
            answer = browser.post("/connect/accept", data={**form, "name": "to-acme", "outbox": "orders"})
            assert answer.status_code == 401 and "log in first" in text_of(answer)
    _unchanged(accept_server, token, before)


def test_the_token_is_neither_logged_nor_written_under_the_home(
    accept_server: AcceptServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    accept_server.service.add_user("trace@globex.test", PASSWORD, "globex")
    tokens = [accept_server.service.invite("receive"), accept_server.service.invite("receive")]
    with accept_server.browser() as browser:
        page = _page(accept_server, browser, tokens[0])
        logged_in = submit(browser, page, "/connect/login", email="trace@globex.test", password=PASSWORD)
        assert submit(browser, logged_in, "/connect/accept", name="trace", outbox="trace").status_code == 200
        assert browser.get(accept_server.page_url(tokens[0])).status_code == 409
        assert (
            submit(browser, _page(accept_server, browser, tokens[1]), "/connect/decline").status_code == 200
        )
    forms = [form for token in tokens for form in (token, quote(token, safe=""), token.removeprefix("tlc1_"))]
    # The server's records (uvicorn, the app, the store): the test's own browser (httpx) logs its URLs.
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    for record in server_records:
        assert not any(form in record.getMessage() for form in forms), record.getMessage()
    for path in accept_server.home.rglob("*"):
        if path.is_file():
            assert not any(form.encode() in path.read_bytes() for form in forms), path


def test_a_failing_service_answers_500_without_logging_the_token(
    accept_server: AcceptServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = accept_server.service.invite()
    with accept_server.browser() as browser:
        form = forms_of(_page(accept_server, browser, token))["/connect/decline"]
        accept_server.service.broken.add(token)
        try:
            # After an unhandled error the server closes the connection: each request on its own.
            shown = browser.get(accept_server.page_url(token), headers={"Connection": "close"})
            fields = {**form, "name": "x", "outbox": "y"}
            posted = browser.post("/connect/accept", data=fields, headers={"Connection": "close"})
        finally:
            accept_server.service.broken.discard(token)
    assert shown.status_code == 500 and posted.status_code == 500
    assert token not in shown.text and token not in posted.text
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any("unhandled error on GET /connect/accept" in r.getMessage() for r in server_records)
    for record in server_records:
        logged = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        assert token not in logged and token.removeprefix("tlc1_") not in logged


def test_logging_in_renews_the_csrf_pair(accept_server: AcceptServer) -> None:
    """A pair known before the login (e.g. planted from a sibling host) does not survive it."""
    accept_server.service.add_user("fix@globex.test", PASSWORD, "globex")
    token = accept_server.service.invite("receive")
    before = len(accept_server.service.changes)
    with accept_server.browser() as browser:
        page = _page(accept_server, browser, token)
        old_cookie, old_form = browser.cookies["tl_csrf"], forms_of(page)["/connect/decline"]
        logged_in = submit(browser, page, "/connect/login", email="fix@globex.test", password=PASSWORD)
        assert browser.cookies["tl_csrf"] != old_cookie
        assert forms_of(logged_in)["/connect/accept"]["csrf"] != old_form["csrf"]
        _refused_as_expired_form(browser.post("/connect/decline", data=old_form))
    _unchanged(accept_server, token, before)
