"""The accept page's real AcceptService (api/web/accept_service.py) against the store: what it refuses
and that a refusal changes nothing. The page itself is tested through HTTP in tests/b2b/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from api.web.accept_service import CoreAcceptService
from api.web.service import AcceptForm, Refused, WebLogin
from core import accounts, web_sessions
from core.b2b import connections
from core.b2b.caller import cli_caller
from core.config import get_settings
from core.db import session_scope
from core.login import LoginUser
from core.models import Connection, Partner, utcnow
from tests.b2b.helpers import ADMIN_PASSWORD, Homes, dump, run

PASSWORD = "a long page password"


def invite_home_to_receive() -> str:
    """`home` invites someone to send it files (landing in lake:in/acme); the clear token."""
    with session_scope() as session:
        invitation = connections.invite(
            session,
            cli_caller(session, "home"),
            name="from-partner",
            direction="receive",
            email="ops@partner.example",
            dest="lake:in/acme",
        )
        return invitation.token


def refused(call: object, *args: object) -> Refused:
    assert callable(call)
    with pytest.raises(Refused) as caught:
        call(*args)
    return caught.value


def test_the_service_accepts_as_the_logged_in_admin(b2b: Homes) -> None:
    service = CoreAcceptService()
    token = invite_home_to_receive()
    view = service.invitation(token)
    assert (view.inviter_account, view.connection_name, view.direction) == ("home", "from-partner", "receive")
    login = service.log_in("admin@acme.example", ADMIN_PASSWORD, "127.0.0.1")
    assert login.account == "acme" and login.is_admin
    cookie = service.start_session(login, "127.0.0.1", "test")
    assert service.session_login(cookie, "127.0.0.1") == login
    outcome = service.accept(token, login, AcceptForm(name="to-home", outbox="orders"))
    assert outcome.message == "active: put files into b2b/orders/"
    assert refused(service.invitation, token).status == 409  # used once


@pytest.mark.parametrize(
    ("token", "status"),
    [("tlc1_short", 400), ("tlc1_" + "A" * 43, 404), ("not a token", 400)],
)
def test_incomplete_forged_and_foreign_tokens_are_refused(b2b: Homes, token: str, status: int) -> None:
    assert refused(CoreAcceptService().invitation, token).status == status


def test_an_invitation_past_its_expiry_is_refused_and_not_accepted(b2b: Homes) -> None:
    service = CoreAcceptService()
    token = invite_home_to_receive()
    login = service.log_in("admin@acme.example", ADMIN_PASSWORD, "127.0.0.1")
    with session_scope() as session:
        session.execute(update(Connection).values(token_expires_at=utcnow() - timedelta(seconds=1)))
    before = dump()
    assert refused(service.invitation, token).status == 410
    gone = refused(service.accept, token, login, AcceptForm(name="to-home", outbox="orders"))
    assert gone.status == 410 and "expired" in gone.message
    assert refused(service.sign_up, token, "newco", "ann@newco.example", PASSWORD, None).status == 410
    assert dump()["connection"] == before["connection"] and dump()["account"] == before["account"]


def test_the_session_ends_at_logout_and_a_partners_session_is_no_login_here(b2b: Homes) -> None:
    service = CoreAcceptService()
    login = service.log_in("admin@acme.example", ADMIN_PASSWORD, "127.0.0.1")
    cookie = service.start_session(login, "127.0.0.1", "test")
    service.end_session(cookie, "127.0.0.1")
    assert service.session_login(cookie, "127.0.0.1") is None
    run("partner", "add", "sesspartner", "--password", PASSWORD)
    with session_scope() as session:
        partner = session.exec(select(Partner).where(Partner.name == "sesspartner")).one()
        _, partner_cookie = web_sessions.create(
            session, LoginUser.of(partner), remote_addr=None, user_agent=None
        )
    assert service.session_login(partner_cookie, "127.0.0.1") is None


def test_partners_and_wrong_passwords_do_not_log_in_on_the_page(b2b: Homes) -> None:
    run("partner", "add", "pagepartner", "--password", PASSWORD)
    service = CoreAcceptService()
    assert refused(service.log_in, "pagepartner", PASSWORD, "127.0.0.1").status == 401
    wrong = refused(service.log_in, "admin@acme.example", "not the password", "127.0.0.1")
    assert (wrong.status, wrong.message) == (401, "wrong e-mail address or password")


def test_one_account_per_invitation_and_the_account_checks_apply(b2b: Homes) -> None:
    service = CoreAcceptService()
    token = invite_home_to_receive()
    weak = refused(service.sign_up, token, "newco", "ann@newco.example", "short", None)
    assert weak.status == 400 and "too short" in weak.message
    taken = refused(service.sign_up, token, "acme", "ann@newco.example", PASSWORD, None)
    assert taken.status == 409 and "already exists" in taken.message
    login = service.sign_up(token, "newco", "ann@newco.example", PASSWORD, "127.0.0.1")
    assert login.account == "newco" and login.is_admin
    second = refused(service.sign_up, token, "otherco", "bob@otherco.example", PASSWORD, None)
    assert (second.status, second.message) == (
        409,
        "an account was already created with this invitation; log in with it",
    )
    assert service.accept(token, login, AcceptForm(name="to-home", outbox="orders")).title.endswith("active")


def test_only_an_admin_of_another_account_accepts(b2b: Homes) -> None:
    service = CoreAcceptService()
    token = invite_home_to_receive()
    with session_scope() as session:
        accounts.add_user(
            session, cli_caller(session, "acme"), "op@acme.example", password=PASSWORD, role="operator"
        )
        accounts.add(session, "homeside", email="admin@homeside.example", password=PASSWORD)
    operator = service.log_in("op@acme.example", PASSWORD, "127.0.0.1")
    assert refused(service.accept, token, operator, AcceptForm(name="x", outbox="o")).status == 403
    with session_scope() as session:  # home's own admin
        accounts.add_user(
            session, cli_caller(session, "home"), "boss@home.example", password=PASSWORD, role="admin"
        )
    own = service.log_in("boss@home.example", PASSWORD, "127.0.0.1")
    assert refused(service.accept, token, own, AcceptForm(name="x", outbox="o")).status == 403
    assert service.invitation(token).direction == "receive"  # still pending


def test_a_removed_user_is_logged_out(b2b: Homes) -> None:
    service = CoreAcceptService()
    with session_scope() as session:
        accounts.add_user(session, cli_caller(session, "acme"), "gone@acme.example", password=PASSWORD)
    login = service.log_in("gone@acme.example", PASSWORD, "127.0.0.1")
    cookie = service.start_session(login, "127.0.0.1", "test")
    with session_scope() as session:
        accounts.remove_user(session, cli_caller(session, "acme"), "gone@acme.example")
    assert service.session_login(cookie, "127.0.0.1") is None
    stale = WebLogin(login.subject, login.email, login.account, True)
    token = invite_home_to_receive()
    assert refused(service.accept, token, stale, AcceptForm(name="x", outbox="o")).status == 401


def test_failed_page_logins_count_towards_the_address_ban(b2b: Homes) -> None:
    service = CoreAcceptService()
    failures = get_settings().lockout_failures
    for _ in range(failures):
        assert refused(service.log_in, "admin@acme.example", "wrong password!", "10.9.9.9").status == 401
    banned = refused(service.log_in, "admin@acme.example", ADMIN_PASSWORD, "10.9.9.9")
    assert banned.status == 429 and "too many failed logins" in banned.message
    assert service.log_in("admin@acme.example", ADMIN_PASSWORD, "10.9.9.10").account == "acme"
