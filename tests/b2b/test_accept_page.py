"""The invitation accept page through a real uvicorn server, with httpx following its forms.

The decisions behind the page (tokens, logins, accepting) belong to the connections core; here a
fake AcceptService stands in for it (tests/b2b/accept_fake.py) and these tests check the page:
what it shows, which forms it offers to whom, that following them reaches the service with the
right values, and the headers and cookies it answers with.
"""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from starlette.responses import Response

from api.web import auth, security
from api.web.service import EndpointChoice
from core.config import get_settings
from tests.b2b.accept_fake import new_token
from tests.b2b.web_server import AcceptServer, accept_server, forms_of, submit, text_of

__all__ = ["accept_server"]

PASSWORD = "a long enough password"


def _open(server: AcceptServer, browser: httpx.Client, token: str) -> httpx.Response:
    page = browser.get(server.page_url(token))
    assert page.status_code == 200, page.text
    return page


def test_the_page_shows_the_invitation_and_offers_log_in_create_and_decline(
    accept_server: AcceptServer,
) -> None:
    token = accept_server.service.invite("send", inviter="acme", name="to-globex", email="bob@globex.test")
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
    text = text_of(page)
    assert "acme invites you to a B2B connection" in text
    assert "to-globex" in text and "acme wants to send files to you" in text and "bob@globex.test" in text
    assert set(forms_of(page)) == {"/connect/login", "/connect/signup", "/connect/decline"}
    # The note for invitees with their own tradelane: the CLI line with the link, to receive.
    assert f"tradelane connect accept '{accept_server.url}/connect/accept?token={token}'" in text
    assert "--dest ENDPOINT[:DIR]" in text


def test_every_answer_carries_the_security_headers(accept_server: AcceptServer) -> None:
    token = accept_server.service.invite()
    with accept_server.browser() as browser:
        answers = [
            browser.get(accept_server.page_url(token)),
            browser.get(accept_server.page_url("tlc1_short")),  # an error page
            browser.get("/connect/static/connect.css"),
            browser.post("/connect/decline", data={"token": token}),  # refused: no CSRF field
        ]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "style-src 'self'" in csp and "form-action 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert answers[2].headers["content-type"].startswith("text/css")


def test_the_page_loads_nothing_from_elsewhere_and_runs_no_script(accept_server: AcceptServer) -> None:
    token = accept_server.service.invite()
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
    assert "<script" not in page.text.lower()
    assert re.findall(r'(?:href|src)="([^"]*)"', page.text) == ["/connect/static/connect.css"]
    assert all(action.startswith("/connect/") for action in re.findall(r'action="([^"]*)"', page.text))


def test_the_csrf_cookie_is_strict_http_only_and_scoped_to_the_page(accept_server: AcceptServer) -> None:
    token = accept_server.service.invite()
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
        cookie = page.headers["set-cookie"].lower()
        assert cookie.startswith("tl_csrf=") and "httponly" in cookie and "samesite=strict" in cookie
        # Path=/: the one CSRF cookie of every web form (login, portal, console, this page).
        assert "path=/;" in cookie and "secure" not in cookie  # the public URL is http
        again = _open(accept_server, browser, token)
        assert "set-cookie" in again.headers  # set on every view, the same value (other tabs' forms work)
        assert again.cookies.get("tl_csrf") in (None, browser.cookies.get("tl_csrf"))
        assert forms_of(again)["/connect/login"]["csrf"] == forms_of(page)["/connect/login"]["csrf"]


def test_log_in_then_accept_into_an_endpoint(accept_server: AcceptServer) -> None:
    service = accept_server.service
    service.add_user("ann@globex.test", PASSWORD, "globex")
    service.endpoints_of["globex"] = [EndpointChoice("lake", "s3"), EndpointChoice("share", "file")]
    token = service.invite("send", inviter="acme")
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
        logged_in = submit(browser, page, "/connect/login", email="ann@globex.test", password=PASSWORD)
        assert logged_in.status_code == 200, logged_in.text
        assert logged_in.url.path == "/connect/accept" and logged_in.url.params["token"] == token
        # The web's one session cookie (the login also holds at /login, /console).
        set_cookies = [c.lower() for c in logged_in.history[0].headers.get_list("set-cookie")]
        login_cookie = next(c for c in set_cookies if c.startswith("tl_session="))
        assert "httponly" in login_cookie and "samesite=lax" in login_cookie and "path=/;" in login_cookie
        assert "Logged in as ann@globex.test (account globex)" in text_of(logged_in)
        form = forms_of(logged_in)["/connect/accept"]
        assert "outbox" not in form and form["endpoint"] == "lake"  # names and types only, in a select
        assert "lake (s3)" in text_of(logged_in) and "share (file)" in text_of(logged_in)
        done = submit(
            browser, logged_in, "/connect/accept", name="from-acme", endpoint="share", dir="in/acme"
        )
        assert done.status_code == 200, done.text
        assert "active: files from acme will land in share:in/acme" in text_of(done)
        assert service.changes[-1] == ("accept", token, "globex", "from-acme")
        used = browser.get(accept_server.page_url(token))
    assert used.status_code == 409 and "already accepted" in text_of(used)


def test_create_an_account_then_accept_with_an_outbox(accept_server: AcceptServer) -> None:
    service = accept_server.service
    token = service.invite("receive", inviter="acme")  # acme receives: the invitee sends
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
        assert "acme wants to receive files from you" in text_of(page)
        assert "--outbox OUTBOX" in text_of(page)
        created = submit(
            browser, page, "/connect/signup", account="initech", email="peter@initech.test", password=PASSWORD
        )
        assert created.status_code == 200, created.text
        assert "Logged in as peter@initech.test (account initech)" in text_of(created)
        # One account per invitation: a second sign-up with the same link is refused.
        with accept_server.browser() as other:
            page2 = _open(accept_server, other, token)
            second = submit(
                other,
                page2,
                "/connect/signup",
                account="initrode",
                email="bill@initrode.test",
                password=PASSWORD,
            )
            assert second.status_code == 409
            assert "an account was already created with this invitation; log in with it" in text_of(second)
            assert forms_of(second)["/connect/signup"]["account"] == "initrode"  # what was typed stays
        done = submit(browser, created, "/connect/accept", name="to-acme", outbox="orders")
        assert done.status_code == 200, done.text
        assert "active: put files into b2b/orders/" in text_of(done)
    assert service.changes[-1] == ("accept", token, "initech", "to-acme")


def test_a_new_account_that_must_receive_is_told_to_add_an_endpoint(accept_server: AcceptServer) -> None:
    token = accept_server.service.invite("send", inviter="acme")
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
        created = submit(
            browser, page, "/connect/signup", account="hooli", email="gavin@hooli.test", password=PASSWORD
        )
    assert "Account hooli has no endpoints yet" in text_of(created)
    assert "tradelane endpoint add --account hooli" in text_of(created)
    assert "/connect/accept" not in forms_of(created)


def test_a_wrong_password_is_refused_on_the_page_with_no_login(accept_server: AcceptServer) -> None:
    accept_server.service.add_user("eve@globex.test", PASSWORD, "globex")
    token = accept_server.service.invite()
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
        refused = submit(browser, page, "/connect/login", email="eve@globex.test", password="not it at all")
        assert refused.status_code == 401
        assert "wrong e-mail or password" in text_of(refused)
        assert "tl_session" not in browser.cookies
        assert forms_of(refused)["/connect/login"]["email"] == "eve@globex.test"
        assert forms_of(refused)["/connect/login"]["password"] == ""  # a password is never sent back


def test_an_operator_is_told_accepting_needs_an_admin(accept_server: AcceptServer) -> None:
    accept_server.service.add_user("op@globex.test", PASSWORD, "globex", admin=False)
    token = accept_server.service.invite()
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
        logged_in = submit(browser, page, "/connect/login", email="op@globex.test", password=PASSWORD)
    assert "Accepting needs an admin of account globex" in text_of(logged_in)
    assert "/connect/accept" not in forms_of(logged_in)


def test_log_out_ends_the_page_login(accept_server: AcceptServer) -> None:
    accept_server.service.add_user("lou@globex.test", PASSWORD, "globex")
    token = accept_server.service.invite("receive")
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
        logged_in = submit(browser, page, "/connect/login", email="lou@globex.test", password=PASSWORD)
        assert "/connect/accept" in forms_of(logged_in)
        out = submit(browser, logged_in, "/connect/logout")
    assert out.status_code == 200 and "/connect/login" in forms_of(out)
    assert "/connect/accept" not in forms_of(out)


def test_decline(accept_server: AcceptServer) -> None:
    token = accept_server.service.invite(inviter="acme")
    with accept_server.browser() as browser:
        page = _open(accept_server, browser, token)
        done = submit(browser, page, "/connect/decline")
        assert done.status_code == 200 and "Invitation declined" in text_of(done)
        assert accept_server.service.changes[-1] == ("decline", token)
        again = browser.get(accept_server.page_url(token))
    assert again.status_code == 409 and "already declined" in text_of(again)


def test_unusable_tokens_get_their_message_and_status(accept_server: AcceptServer) -> None:
    expired = accept_server.service.invite(expires_in=timedelta(seconds=-1))
    cases = {
        "tlc1_" + "a" * 30: (400, "the invitation token is incomplete (30 of 43 characters after tlc1_)"),
        new_token(): (404, "no such invitation: check that the link is complete and unchanged"),
        "": (400, "not an invitation token or link"),
        expired: (410, "this invitation expired; ask acme for a new one"),
    }
    with accept_server.browser() as browser:
        for token, (status, message) in cases.items():
            page = browser.get(accept_server.page_url(token))
            assert page.status_code == status, (token, page.text)
            assert message in text_of(page)
            assert forms_of(page) == {}


def test_cookies_are_secure_when_the_public_url_is_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELANE_PUBLIC_URL", "https://hub.acme.test")
    get_settings.cache_clear()
    try:
        response = Response()
        security.set_csrf_cookie(response, security.new_csrf_cookie())
        auth.set_session_cookie(response, None, "value")
        cookies = [value.decode().lower() for key, value in response.raw_headers if key == b"set-cookie"]
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert len(cookies) == 2
    assert all("; secure" in c and "httponly" in c for c in cookies)
    assert "samesite=strict" in cookies[0] and "samesite=lax" in cookies[1]
