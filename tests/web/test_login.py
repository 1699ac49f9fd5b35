"""The web's one login (/login) over real HTTP: partners land on /portal, account users on /console,
through the one login policy (protocol `web`, the same ledger as REST, SFTP and FTP); logout and a new
password end the session so the old cookie value is refused; every unsafe request needs our origin
and the CSRF token.

The server trusts 127.0.0.1 as a proxy, so each test that fails logins speaks from its own
`X-Forwarded-For` address (TEST-NET) and a ban in one test never blocks the next.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest
from sqlmodel import select

from api.web.auth import SESSION_COOKIE
from core import accounts, partners
from core.db import session_scope
from core.models import AuditEvent, LoginFailure, WebSession
from tests.b2b.web_server import forms_of, text_of
from tests.tenancy import home_scope
from tests.web.server import WebServer, web_server

PASSWORD = "Pw-web-login-01"
_names = itertools.count(1)
_addresses = (f"198.51.100.{n}" for n in itertools.count(10))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    env = {"TRADELANE_FORWARDED_ALLOW_IPS": "127.0.0.1", "TRADELANE_LOCKOUT_FAILURES": "3"}
    with web_server(tmp_path_factory.mktemp("web-login"), env) as running:
        yield running


def new_partner() -> str:
    name = f"webpartner{next(_names)}"
    with session_scope() as session:
        partners.add(session, home_scope(session), name, password=PASSWORD)
    return name


def new_user(role: str = "operator") -> str:
    email = f"user{next(_names)}@home.example"
    with session_scope() as session:
        accounts.add_user(session, home_scope(session), email, password=PASSWORD, role=role)
    return email


def browser(server: WebServer, **headers: str) -> httpx.Client:
    """A browser speaking from an address of its own."""
    return server.browser(**{"X-Forwarded-For": next(_addresses), **headers})


def log_in(client: httpx.Client, name: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
    page = client.get("/login")
    form = forms_of(page)["/login"]
    return client.post("/login", data={**form, "name": name, "password": password, **extra})


def test_a_partner_logs_in_to_the_portal_and_a_user_to_the_console(server: WebServer) -> None:
    partner, user = new_partner(), new_user()
    with browser(server) as client:
        answer = log_in(client, partner)
        assert answer.status_code == 303 and answer.headers["location"] == "/portal"
        portal = client.get("/portal")
        assert portal.status_code == 200 and f"partner {partner} of account home" in text_of(portal)
        assert client.get("/").headers["location"] == "/portal"
        # The console is the account's: a partner is sent back to its portal, told why, once.
        assert client.get("/console").headers["location"] == "/portal"
        told = client.get("/console", follow_redirects=True)
        said = "the console is for your account's users; your files are in the portal"
        assert said in unescape(text_of(told))
        assert "the console is for your account" not in text_of(client.get("/portal"))
    with browser(server) as client:
        answer = log_in(client, user)
        assert answer.headers["location"] == "/console"
        console = client.get("/console")
        assert f"operator user {user} of account home" in text_of(console)
    with session_scope() as session:
        logins = session.exec(select(AuditEvent).where(AuditEvent.action == "login")).all()
        assert {(e.actor, e.detail.get("protocol")) for e in logins} >= {
            (f"partner:{partner}", "web"),
            (f"user:{user}", "web"),
        }


def test_the_session_cookie_is_http_only_lax_and_unreadable_in_the_store(server: WebServer) -> None:
    with browser(server) as client:
        answer = log_in(client, new_partner())
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
        flags = cookie.lower()
        assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
        assert "max-age" not in flags and "secure" not in flags  # the public URL is http
        value = client.cookies[SESSION_COOKIE]
    with session_scope() as session:
        assert value not in {row.token_hash for row in session.exec(select(WebSession))}


def test_pages_need_a_login_and_come_back_after_it(server: WebServer) -> None:
    partner = new_partner()
    with browser(server) as client:
        assert client.get("/").headers["location"] == "/login"
        gone = client.get("/portal")
        assert gone.status_code == 303 and gone.headers["location"] == "/login?next=/portal"
        assert client.get("/portal/login").headers["location"] == "/login?next=/portal"
        assert client.get("/console/login").headers["location"] == "/login?next=/console"
        # A script's request (no HTML wanted) gets 401, not a login page.
        assert client.get("/portal", headers={"Accept": "application/json"}).status_code == 401
        page = client.get("/login?next=/portal")
        assert forms_of(page)["/login"]["next"] == "/portal"
        answer = log_in(client, partner, next="/portal")
        assert answer.headers["location"] == "/portal"


OFF_SITE = ["//evil.example/", "https://evil.example/", "/\\evil.example", "/api/folders"]


@pytest.mark.parametrize("target", OFF_SITE)
def test_next_never_leaves_our_pages(server: WebServer, target: str) -> None:
    with browser(server) as client:
        assert forms_of(client.get("/login", params={"next": target}))["/login"]["next"] == ""
        answer = log_in(client, new_partner(), next=target)
        assert answer.headers["location"] == "/portal"


def test_logout_refuses_the_old_cookie_value(server: WebServer) -> None:
    with browser(server) as client:
        log_in(client, new_partner())
        old = client.cookies[SESSION_COOKIE]
        portal = client.get("/portal")
        out = client.post("/logout", data=forms_of(portal)["/logout"])
        assert out.status_code == 303 and out.headers["location"] == "/login?done=logout"
        assert "You are logged out." in text_of(client.get("/login?done=logout"))
    with browser(server) as replay:
        replay.cookies.set(SESSION_COOKIE, old)
        again = replay.get("/portal")
        assert again.status_code == 303 and again.headers["location"] == "/login?next=/portal&ended=1"


def test_a_new_password_ends_the_session(server: WebServer) -> None:
    partner = new_partner()
    with browser(server) as client:
        log_in(client, partner)
        assert client.get("/portal").status_code == 200
        with session_scope() as session:
            row = partners.require(session, home_scope(session), partner)
            partners.set_password(session, home_scope(session), row, "Pw-web-login-02")
        assert client.get("/portal").headers["location"].startswith("/login?next=/portal")
        assert log_in(client, partner, "Pw-web-login-02").headers["location"] == "/portal"


def test_a_wrong_password_says_so_and_the_address_is_banned_after_the_limit(server: WebServer) -> None:
    partner = new_partner()
    with browser(server) as client:
        for _ in range(3):  # TRADELANE_LOCKOUT_FAILURES=3
            refused = log_in(client, partner, "not the password")
            assert refused.status_code == 401 and "wrong name or password" in text_of(refused)
            assert forms_of(refused)["/login"]["name"] == partner  # what was typed stays
            assert forms_of(refused)["/login"]["password"] == ""  # a password is never sent back
            assert SESSION_COOKIE not in client.cookies
        banned = log_in(client, partner)  # the right password, from the banned address
        assert banned.status_code == 429 and int(banned.headers["Retry-After"]) > 0
        assert re.search(r"too many failed logins from your address: try again in \d+ s", text_of(banned))
    with browser(server) as elsewhere:  # the partner itself is not locked out
        assert log_in(elsewhere, partner).headers["location"] == "/portal"
    with session_scope() as session:
        failures = session.exec(select(LoginFailure).where(LoginFailure.username == partner)).all()
        assert [f.protocol for f in failures] == ["web"] * 3  # the one ledger, protocol web


def test_unknown_names_and_users_read_like_a_wrong_password(server: WebServer) -> None:
    with browser(server) as client:
        for name in ("nobody-here", "nobody@home.example"):
            refused = log_in(client, name)
            assert refused.status_code == 401 and "wrong name or password" in text_of(refused)


def _logged_in_form(server: WebServer, client: httpx.Client) -> dict[str, str]:
    log_in(client, new_partner())
    return forms_of(client.get("/portal"))["/logout"]


@pytest.mark.parametrize(
    "attack",
    [
        "no token",
        "forged token",
        "token of another cookie",
        "other origin",
        "cross-site fetch",
        "same-site fetch",
    ],
)
def test_unsafe_requests_need_our_origin_and_the_csrf_token(server: WebServer, attack: str) -> None:
    with browser(server) as client:
        form = _logged_in_form(server, client)
        headers: dict[str, str] = {}
        if attack == "no token":
            form = {"next": ""}
        elif attack == "forged token":
            form = {"csrf": "0" * 64}
        elif attack == "token of another cookie":
            with browser(server) as other:
                form = forms_of(other.get("/login"))["/login"]
        elif attack == "other origin":
            headers = {"Origin": "http://evil.example"}
        elif attack == "cross-site fetch":
            headers = {"Sec-Fetch-Site": "cross-site"}
        else:  # a sibling port or host of ours is still another origin
            headers = {"Sec-Fetch-Site": "same-site", "Origin": server.url.replace("127.0.0.1", "localhost")}
        refused = client.post("/logout", data=form, headers=headers)
        assert refused.status_code == 403
        assert "the form expired or came from another site: reload the page" in text_of(refused)
        assert client.get("/portal").status_code == 200  # still logged in: nothing was done


def test_a_login_post_from_another_site_is_refused(server: WebServer) -> None:
    partner = new_partner()
    with browser(server, Origin="http://evil.example", **{"Sec-Fetch-Site": "cross-site"}) as client:
        refused = log_in(client, partner)
        assert refused.status_code == 403 and SESSION_COOKIE not in client.cookies


def _every_route(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, through included routers (FastAPI includes them lazily)."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _every_route(route.original_router.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "methods"):
            yield prefix + route.path, set(route.methods or ())


def test_every_unsafe_web_route_refuses_a_request_without_the_csrf_token(server: WebServer) -> None:
    """Walks the app's routes: each POST/PUT/PATCH/DELETE of the web's pages (not /api, /as2, /peer,
    which take no cookies) refuses a same-origin request that lacks the token, before doing anything.
    A route the portal or console adds without `CheckedFormDep` fails here."""
    from api.app import create_app
    from api.web.accept_service import CoreAcceptService

    unsafe = {"POST", "PUT", "PATCH", "DELETE"}
    web = [
        (method, path)
        for path, methods in _every_route(create_app(CoreAcceptService()).routes)
        if not path.startswith(("/api", "/as2", "/peer", "/docs"))
        for method in sorted(methods & unsafe)
    ]
    assert {("POST", "/login"), ("POST", "/logout"), ("POST", "/connect/accept")} <= set(web)
    with browser(server) as client:
        log_in(client, new_partner())
        for method, path in web:
            url = re.sub(r"\{[^}]+\}", "x", path)
            answer = client.request(method, url, data={"next": ""})
            if answer.status_code == 415:  # a route that takes files (the portal's no-script upload)
                answer = client.request(method, url, files=[("files", ("a.txt", b"a"))])
            assert answer.status_code in (403, 404), (method, path, answer.status_code)
            if answer.status_code == 403:
                assert "came from another site" in answer.text
        assert client.get("/portal").status_code == 200  # nothing logged it out


def test_cookies_are_secure_when_the_public_url_is_https(tmp_path_factory: pytest.TempPathFactory) -> None:
    public = "https://files.example.test"
    env = {"TRADELANE_PUBLIC_URL": public}
    with web_server(tmp_path_factory.mktemp("web-https"), env) as running:
        partner = new_partner()
        with running.browser(Origin=public) as client:
            page = client.get("/login")
            csrf = page.headers["set-cookie"]
            assert csrf.startswith("tl_csrf=") and "secure" in csrf.lower()
            # httpx keeps Secure cookies off plain http (as a browser would): hand it back.
            client.cookies.set("tl_csrf", csrf.split(";")[0].split("=", 1)[1])
            form = forms_of(page)["/login"]
            answer = client.post("/login", data={**form, "name": partner, "password": PASSWORD})
            assert answer.status_code == 303
            cookies = {c.split("=", 1)[0]: c.lower() for c in answer.headers.get_list("set-cookie")}
            assert "secure" in cookies[SESSION_COOKIE] and "secure" in cookies["tl_csrf"]


def test_the_accept_page_and_the_console_share_one_session(server: WebServer) -> None:
    """Logging in on the invitation page logs the user in on the console too (one cookie, one
    session), and logging out anywhere ends it everywhere."""
    user = new_user("admin")
    with browser(server) as client:
        form = forms_of(client.get("/login"))["/login"]  # the one tl_csrf cookie (Path=/) of every form
        answer = client.post(
            "/connect/login", data={"csrf": form["csrf"], "token": "", "email": user, "password": PASSWORD}
        )
        assert answer.status_code == 303 and SESSION_COOKIE in client.cookies
        console = client.get("/console")
        assert console.status_code == 200 and user in text_of(console)
        client.post("/logout", data=forms_of(console)["/logout"])
        assert client.get("/console").headers["location"].startswith("/login")


def test_pages_load_only_our_own_files_and_those_files_exist(server: WebServer) -> None:
    with browser(server) as client:
        log_in(client, new_partner())
        for path in ("/login", "/portal"):
            page = client.get(path)
            assert page.status_code == 200
            links = re.findall(r'(?:src|href|action)="([^"]*)"', page.text)
            local = all(link.startswith(("/", "#")) and not link.startswith("//") for link in links)
            assert links and local, links
            # No inline script or event handler (the CSP would refuse them anyway).
            assert "<script>" not in page.text and not re.search(r"\son[a-z]+\s*=", page.text, re.I)
            for asset in (link for link in links if link.startswith("/static/")):
                served = client.get(asset)
                assert served.status_code == 200 and len(served.content) > 100, asset


def test_a_flash_message_not_signed_by_us_is_not_shown(server: WebServer) -> None:
    import base64

    with browser(server) as client:
        log_in(client, new_partner())
        forged = base64.urlsafe_b64encode(b"Call +1 555 0100 to verify your account").decode()
        client.cookies.set("tl_flash", forged + "." + "0" * 32)
        assert "555 0100" not in client.get("/portal").text
