"""POST /api/authentication and the bearer token every other /api route requires."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import httpx
import jwt
import pytest
from sqlmodel import select

from core import partners
from core.crypto import signing_key
from core.db import session_scope
from core.models import AuditEvent, Partner
from tests.addresses import fresh_loopback
from tests.api.conftest import PartnerLogin, Server
from tests.tenancy import home_scope

MakePartner = Callable[..., PartnerLogin]


def login(client: httpx.Client, username: str, password: str, grant_type: str = "password") -> httpx.Response:
    return client.post(
        "/api/authentication", data={"grant_type": grant_type, "username": username, "password": password}
    )


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def claims_for(p: PartnerLogin, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": p.uid, "name": p.name, "iat": now, "exp": now + 600, "typ": "access", **overrides}


def audit_events(action: str, target: str) -> list[AuditEvent]:
    with session_scope() as session:
        return list(
            session.exec(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.target == target))
        )


def test_token_response(client: httpx.Client, make_partner: MakePartner) -> None:
    p = make_partner()
    r = login(client, p.name, p.password)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == {"token_type", "access_token", "expires_in", "user_id"}
    assert body["token_type"] == "bearer"
    assert body["user_id"] == p.uid
    claims = jwt.decode(body["access_token"], signing_key(), algorithms=["HS256"])
    assert claims["sub"] == p.uid and claims["name"] == p.name and claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 3600
    events = audit_events("login", p.name)
    assert len(events) == 2  # make_partner logged in once already
    event = events[-1]
    assert event.remote_addr == "127.0.0.1"
    assert event.actor == f"partner:{p.name}"


@pytest.mark.parametrize("which", ["wrong password", "unknown user", "unknown user, the dummy's password"])
def test_bad_credentials(client: httpx.Client, make_partner: MakePartner, which: str) -> None:
    p = make_partner()
    username, password = {
        "wrong password": (p.name, p.password + "x"),
        "unknown user": (f"{p.name}-nobody", p.password),
        # core/login.py verifies an unknown user's password against a fixed hash of this one.
        "unknown user, the dummy's password": (f"{p.name}-nobody", "tradelane-no-such-user"),
    }[which]
    r = login(client, username, password)
    assert r.status_code == 401
    assert r.json() == {"message": "invalid username or password"}
    assert r.headers["www-authenticate"] == "Bearer"
    [event] = audit_events("login.failed", username)
    assert event.remote_addr == "127.0.0.1"


def test_unsupported_grant_type(client: httpx.Client, make_partner: MakePartner) -> None:
    p = make_partner()
    r = login(client, p.name, p.password, grant_type="client_credentials")
    assert r.status_code == 400
    assert "grant_type" in r.json()["message"]


def test_missing_form_field(client: httpx.Client) -> None:
    r = client.post("/api/authentication", data={"grant_type": "password", "username": "x"})
    assert r.status_code == 400
    assert "password" in r.json()["message"]
    # An empty form value counts as missing.
    r = client.post("/api/authentication", data={"grant_type": "password", "username": "x", "password": ""})
    assert r.status_code == 400
    assert "password" in r.json()["message"]
    r = client.post("/api/authentication", json={"grant_type": "password", "username": "x", "password": "y"})
    assert r.status_code == 400


def expect_401(client: httpx.Client, headers: dict[str, str], contains: str = "") -> None:
    for url in ("/api/folders", "/api/folders/00000000-0000-0000-0000-000000000000/children"):
        r = client.get(url, headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        assert contains in r.json()["message"]


def test_missing_token(client: httpx.Client) -> None:
    expect_401(client, {}, "missing bearer token")
    expect_401(client, {"Authorization": "Basic YWNtZTpwdw=="}, "missing bearer token")


def test_expired_token(client: httpx.Client, make_partner: MakePartner) -> None:
    p = make_partner()
    past = int(time.time()) - 7200
    token = jwt.encode(claims_for(p, iat=past, exp=past + 3600), signing_key(), algorithm="HS256")
    expect_401(client, {"Authorization": f"Bearer {token}"}, "expired")


@pytest.mark.parametrize("kind", ["other key", "alg none", "malformed", "wrong typ", "no exp", "unknown sub"])
def test_forged_tokens(client: httpx.Client, make_partner: MakePartner, kind: str) -> None:
    p = make_partner()
    if kind == "other key":
        token = jwt.encode(claims_for(p), b"k" * 32, algorithm="HS256")
    elif kind == "alg none":
        token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_for(p))}."
    elif kind == "malformed":
        token = "not-a-jwt"
    elif kind == "wrong typ":
        token = jwt.encode(claims_for(p, typ="refresh"), signing_key(), algorithm="HS256")
    elif kind == "no exp":
        claims = claims_for(p)
        del claims["exp"]
        token = jwt.encode(claims, signing_key(), algorithm="HS256")
    else:
        token = jwt.encode(claims_for(p, sub="no-such-partner"), signing_key(), algorithm="HS256")
    expect_401(client, {"Authorization": f"Bearer {token}"})
    # The genuine token still works.
    assert p.get("/api/folders").status_code == 200


def test_removed_partner_token(make_partner: MakePartner) -> None:
    p = make_partner()
    assert p.get("/api/folders").status_code == 200
    with session_scope() as session:
        partners.remove(session, home_scope(session), p.name)
    r = p.get("/api/folders")
    assert r.status_code == 401
    assert r.json()["message"] == "this login is disabled or no longer exists"


def test_disabled_partner_token(make_partner: MakePartner) -> None:
    p = make_partner()
    with session_scope() as session:
        partner = session.exec(select(Partner).where(Partner.uid == p.uid)).one()
        partner.enabled = False
        session.add(partner)
    assert p.get("/api/folders").status_code == 401
    assert login(p.client, p.name, p.password).status_code == 401


def test_every_api_route_requires_a_token(client: httpx.Client, app: object) -> None:
    some_id = "00000000-0000-0000-0000-000000000000"
    for method, url in [
        ("GET", "/api/folders"),
        ("GET", f"/api/folders/{some_id}"),
        ("GET", f"/api/folders/{some_id}/children"),
        ("GET", f"/api/folders/{some_id}/files"),
        ("POST", f"/api/folders/{some_id}/files"),
        ("GET", "/api/files/abc"),
        ("GET", "/api/files/abc/content"),
        ("DELETE", "/api/files/abc"),
    ]:
        r = client.request(method, url)
        assert r.status_code == 401, (method, url, r.text)
        assert r.json()["message"]


def test_an_address_is_banned_after_repeated_failures_then_cooldown(
    server: Server, make_partner: MakePartner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from core.config import get_settings
    from core.login import shared_policy
    from core.models import utcnow

    monkeypatch.setenv("TRADELANE_LOCKOUT_FAILURES", "3")
    monkeypatch.setenv("TRADELANE_LOCKOUT_COOLDOWN_SECONDS", "60")
    get_settings.cache_clear()
    now = [utcnow()]
    monkeypatch.setattr(shared_policy(), "clock", lambda: now[0])
    p = make_partner()
    guesser = httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=fresh_loopback()))
    try:
        for _ in range(3):
            assert login(guesser, p.name, "wrong").status_code == 401
        # Banned: even the right password is refused from that address until the cool-down passes...
        r = login(guesser, p.name, p.password)
        assert r.status_code == 429
        assert "too many failed logins" in r.json()["message"]
        assert int(r.headers["retry-after"]) > 0
        # ...while the partner logs in from anywhere else.
        assert login(p.client, p.name, p.password).status_code == 200
        now[0] += timedelta(seconds=61)
        assert login(guesser, p.name, p.password).status_code == 200
    finally:
        guesser.close()
        monkeypatch.undo()
        get_settings.cache_clear()


def test_allow_list_refuses_other_networks(client: httpx.Client, make_partner: MakePartner) -> None:
    from core.db import session_scope
    from core.models import Partner

    p = make_partner()
    with session_scope() as session:
        row = session.get(Partner, p.id)
        assert row is not None
        row.allowed_networks = ["10.0.0.0/8"]
        session.add(row)
    assert login(client, p.name, p.password).status_code == 401
    with session_scope() as session:
        row = session.get(Partner, p.id)
        assert row is not None
        row.allowed_networks = ["127.0.0.0/8"]
        session.add(row)
    assert login(client, p.name, p.password).status_code == 200
