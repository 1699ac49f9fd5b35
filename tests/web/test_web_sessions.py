"""core/web_sessions.py on the real store: a session is found by its cookie value only while it may
go on, and every way it ends (logout, idle, absolute expiry, new password, lock, role change,
removal, allow-list) refuses the same value from then on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from core import accounts, partners, web_sessions
from core.db import get_engine, init_db, session_scope
from core.login import LoginUser
from core.models import AccountUser, Partner, WebSession, utcnow
from tests.isolation import isolated_home
from tests.tenancy import home_scope

PASSWORD = "Pw-web-sessions-1"
ADDR = "192.0.2.10"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    with isolated_home(tmp_path) as path:
        init_db()
        with session_scope() as session:
            partners.add(session, home_scope(session), "acme", password=PASSWORD)
            accounts.add_user(
                session, home_scope(session), "ops@home.example", password=PASSWORD, role="operator"
            )
        yield path


def _partner(session: Session) -> Partner:
    row = session.exec(select(Partner).where(Partner.name == "acme")).one()
    return row


def _user(session: Session) -> AccountUser:
    return session.exec(select(AccountUser).where(AccountUser.email == "ops@home.example")).one()


def _logged_in(login: str = "partner") -> str:
    with session_scope() as session:
        row = _partner(session) if login == "partner" else _user(session)
        _, value = web_sessions.create(session, LoginUser.of(row), remote_addr=ADDR, user_agent="test")
    return value


def _check(value: str, *, at: timedelta = timedelta(0), addr: str = ADDR) -> str | None:
    """The login name the value's session is for, `at` from now; None when refused."""
    with session_scope() as session:
        found = web_sessions.check(session, value, addr, now=utcnow() + at)
        return found.login.name if found else None


def test_only_the_hash_of_the_cookie_is_stored_and_it_finds_the_login(home: Path) -> None:
    value = _logged_in()
    assert len(value) >= 43  # 256 bits, url-safe
    with get_engine().connect() as conn:
        stored = conn.execute(text("SELECT token_hash, kind FROM web_session")).all()
    assert stored == [(web_sessions.token_hash(value), "partner")] and value not in str(stored)
    assert _check(value) == "acme"
    assert _check(value + "x") is None and _check("") is None


def test_logout_refuses_the_old_value(home: Path) -> None:
    value = _logged_in()
    with session_scope() as session:
        found = web_sessions.check(session, value, ADDR)
        assert found is not None
        web_sessions.end(session, found.row, "logout")
    assert _check(value) is None
    with session_scope() as session:
        row = session.exec(select(WebSession)).one()
        assert row.ended_reason == "logout"


def test_an_unused_session_ends_after_the_idle_time_and_any_after_the_absolute_one(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle = _logged_in()
    assert _check(idle, at=timedelta(minutes=29)) == "acme"  # used: the idle time starts again
    assert _check(idle, at=timedelta(minutes=29 + 31)) is None
    assert _check(idle) is None  # ended for good, even "back in time"

    used = _logged_in()
    for minutes in range(25, 12 * 60, 25):  # used every 25 minutes: never idle...
        assert _check(used, at=timedelta(minutes=minutes)) == "acme", minutes
    assert _check(used, at=timedelta(hours=12, minutes=1)) is None  # ...but 12 h is the end


def test_last_seen_is_written_at_most_once_a_minute(home: Path) -> None:
    value = _logged_in()
    with session_scope() as session:
        first = session.exec(select(WebSession)).one().last_seen_at
    _check(value, at=timedelta(seconds=30))
    with session_scope() as session:
        assert session.exec(select(WebSession)).one().last_seen_at == first
    _check(value, at=timedelta(seconds=61))
    with session_scope() as session:
        assert session.exec(select(WebSession)).one().last_seen_at > first


@pytest.mark.parametrize("change", ["password", "disable", "lock", "remove", "allow-list"])
def test_what_ends_a_partners_sessions_ends_its_web_session(home: Path, change: str) -> None:
    value = _logged_in()
    with session_scope() as session:
        scope, partner = home_scope(session), _partner(session)
        if change == "password":
            partners.set_password(session, scope, partner, "Pw-web-sessions-2")
        elif change == "disable":
            partners.configure(session, scope, partner, enabled=False)
        elif change == "lock":
            partner.locked_until = utcnow() + timedelta(minutes=15)
            session.add(partner)
        elif change == "remove":
            partners.remove(session, scope, "acme", force=True)
        else:
            partners.configure(session, scope, partner, allowed_networks=["198.51.100.0/24"])
    assert _check(value) is None


@pytest.mark.parametrize("change", ["password", "role", "remove"])
def test_what_ends_a_users_sessions_ends_its_web_session(home: Path, change: str) -> None:
    value = _logged_in("user")
    assert _check(value) == "ops@home.example"
    with session_scope() as session:
        scope = home_scope(session)
        if change == "password":
            accounts.set_user(session, scope, "ops@home.example", password="Pw-web-sessions-2")
        elif change == "role":
            accounts.set_user(session, scope, "ops@home.example", role="read-only")
        else:
            accounts.remove_user(session, scope, "ops@home.example")
    assert _check(value) is None


def test_end_all_ends_every_session_of_one_login_only(home: Path) -> None:
    first, second, user = _logged_in(), _logged_in(), _logged_in("user")
    with session_scope() as session:
        partner_id = _partner(session).id
        assert partner_id is not None
        assert web_sessions.end_all(session, "partner", partner_id, "log out everywhere") == 2
    assert _check(first) is None and _check(second) is None
    assert _check(user) == "ops@home.example"


def test_prune_deletes_what_ended_over_a_day_ago(home: Path) -> None:
    old, live = _logged_in(), _logged_in()
    with session_scope() as session:
        found = web_sessions.check(session, old, ADDR)
        assert found is not None
        web_sessions.end(session, found.row, "logout", now=utcnow() - timedelta(days=2))
    with session_scope() as session:
        assert web_sessions.prune(session) == 1
    assert _check(live) == "acme"
