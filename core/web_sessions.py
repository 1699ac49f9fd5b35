"""Browser sessions of the portal and the console: server-side, so they can be ended at once.

A login (core/login.py, protocol `web`) gets a random 256-bit cookie value; the store keeps only its
SHA-256, so reading the database yields no live cookie. A session is refused (and marked ended)
when it was logged out, is past its absolute end (`web_session_max_seconds`, 12 h) or was unused
for `web_session_idle_seconds` (30 min), or when `core.login.session_refusal` ends its login's
sessions: removed, disabled, locked, a new password or role (`sessions_ended_at` after the session
began), or an address outside a partner's allow-list.

`last_seen_at` is written at most once a minute per session, so browsing costs no write per page.
No FastAPI here: api/web/auth.py turns a cookie into a route's login.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, or_, update
from sqlmodel import Session, col, select

from core import audit
from core.config import get_settings
from core.login import Login, LoginUser, session_refusal
from core.models import AccountUser, Partner, WebSession, WebUpload, WebUploadState, utcnow

Kind = Literal["partner", "user"]
# How often last_seen_at is written for one session, at most.
TOUCH_SECONDS = 60.0
# Ended or expired sessions (and finished uploads) are kept this long for the record, then deleted.
KEEP_ENDED = timedelta(days=1)
KEEP_FINISHED_UPLOADS = timedelta(days=7)
USER_AGENT_CHARS = 200


def token_hash(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Checked:
    """A live session and its login, as they are now."""

    row: WebSession
    login: Login


def create(
    session: Session,
    login: LoginUser,
    *,
    remote_addr: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> tuple[WebSession, str]:
    """A new session for `login` (as the login policy let it in) and its cookie value, which is
    returned once and never stored."""
    now = now or utcnow()
    value = secrets.token_urlsafe(32)
    row = WebSession(
        token_hash=token_hash(value),
        kind=login.kind,
        principal_id=login.partner_id,
        account_id=login.account_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=get_settings().web_session_max_seconds),
        remote_addr=remote_addr,
        user_agent=(user_agent or "")[:USER_AGENT_CHARS] or None,
    )
    session.add(row)
    session.flush()
    _prune_now_and_then(session, now)
    return row, value


def _login_of(session: Session, row: WebSession) -> Login | None:
    if row.kind == "user":
        return session.get(AccountUser, row.principal_id)
    return session.get(Partner, row.principal_id)


def why_ended(row: WebSession, login: Login | None, remote_addr: str | None, now: datetime) -> str | None:
    """Why the session may not go on now (None: it may)."""
    if row.ended_at is not None:
        return row.ended_reason or "ended"
    if now >= _aware(row.expires_at):
        return "expired"
    if now - _aware(row.last_seen_at) >= timedelta(seconds=get_settings().web_session_idle_seconds):
        return "idle"
    return session_refusal(login, remote_addr, _aware(row.created_at))


def check(
    session: Session, cookie_value: str | None, remote_addr: str | None, now: datetime | None = None
) -> Checked | None:
    """The live session this cookie value names, with its login; None when there is none or it must
    end (it is then marked ended with the reason, so the same value is refused from then on)."""
    if not cookie_value or len(cookie_value) > 128:
        return None
    now = now or utcnow()
    row = session.exec(select(WebSession).where(WebSession.token_hash == token_hash(cookie_value))).first()
    if row is None:
        return None
    login = _login_of(session, row)
    reason = why_ended(row, login, remote_addr, now)
    if reason is not None:
        if row.ended_at is None:
            end(session, row, reason, now=now)
        return None
    assert login is not None
    if now - _aware(row.last_seen_at) >= timedelta(seconds=TOUCH_SECONDS):
        row.last_seen_at = now
        session.add(row)
    return Checked(row, login)


def end(session: Session, row: WebSession, reason: str, *, now: datetime | None = None) -> None:
    """End one session (logout, or a refusal found by `check`)."""
    if row.ended_at is not None:
        return
    row.ended_at = now or utcnow()
    row.ended_reason = reason[:200]
    session.add(row)
    if reason == "logout":
        audit.record(
            session,
            "logout",
            actor=f"{row.kind}:{_name(session, row)}",
            account_id=row.account_id,
            protocol="web",
            remote_addr=row.remote_addr,
        )


def _name(session: Session, row: WebSession) -> str:
    login = _login_of(session, row)
    return login.name if login is not None else str(row.principal_id)


def end_all(session: Session, kind: Kind, principal_id: int, reason: str) -> int:
    """End every live session of one login ("log out everywhere", removal); how many."""
    now = utcnow()
    result = session.exec(
        update(WebSession)
        .where(
            col(WebSession.kind) == kind,
            col(WebSession.principal_id) == principal_id,
            col(WebSession.ended_at).is_(None),
        )
        .values(ended_at=now, ended_reason=reason[:200])
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def prune(session: Session, now: datetime | None = None) -> int:
    """Delete sessions ended or expired more than a day ago, finished uploads older than a week and
    open uploads past their expiry (their staged bytes are swept by the staging's own sweep)."""
    now = now or utcnow()
    old = now - KEEP_ENDED
    sessions = session.exec(
        delete(WebSession).where(or_(col(WebSession.ended_at) < old, col(WebSession.expires_at) < old))
    )
    finished = (WebUploadState.done, WebUploadState.cancelled, WebUploadState.superseded)
    kept_until = now - KEEP_FINISHED_UPLOADS
    uploads = session.exec(
        delete(WebUpload).where(
            or_(
                col(WebUpload.state).in_(finished) & (col(WebUpload.updated_at) < kept_until),
                (col(WebUpload.state) == WebUploadState.open) & (col(WebUpload.expires_at) < now),
            )
        )
    )
    return int(sessions.rowcount or 0) + int(uploads.rowcount or 0)


_prune_lock = threading.Lock()
_pruned_at = 0.0


def _prune_now_and_then(session: Session, now: datetime) -> None:
    """Prune at most once an hour per process, on a login (no sweeper needed)."""
    global _pruned_at
    with _prune_lock:
        if time.monotonic() - _pruned_at < 3600 and _pruned_at:
            return
        _pruned_at = time.monotonic()
    prune(session, now)
