"""The accept page's `AcceptService`, decided by the core: the connections (core/b2b/connections.py),
the one login policy (core/login.py, protocol `web`) and the accounts (core/accounts.py).

Each call is one short transaction. Every core refusal (a `StatusError`, or an accounts/login-name
`ValueError` whose text starts with its status) becomes `Refused(status, message)`: the page shows
the same words the CLI and the REST API give. The clear token is only hashed here, never kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from api.web.service import (
    AcceptForm,
    EndpointChoice,
    InvitationView,
    Outcome,
    Refused,
    WebLogin,
)
from core import accounts, web_sessions
from core.b2b import connections, tokens
from core.db import session_scope
from core.errors import Conflict, Gone, StatusError
from core.login import LoginPolicy, LoginRefused, LoginUser, shared_policy, standing
from core.models import Account, AccountUser, Connection, ConnectionState
from core.models import Endpoint as EndpointRow
from core.tenancy import Scope, scope_for_login

PROTOCOL = "web"
WRONG_LOGIN = "wrong e-mail address or password"


def refusal_of(exc: ValueError) -> Refused:
    """A core refusal as the page shows it: its status and its message."""
    if isinstance(exc, StatusError):
        return Refused(exc.status, exc.message)
    return Refused(400, str(exc))  # a weak password, a bad address: the person can fix it


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except ValueError as exc:  # StatusError, AccountError, LoginNameError, WeakPassword, …
        raise refusal_of(exc) from None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _inviter_account_id(conn: Connection) -> int | None:
    return conn.sender_account_id if conn.direction == "send" else conn.receiver_account_id


def _account_name(session: Session, account_id: int | None) -> str:
    account = session.get(Account, account_id) if account_id is not None else None
    return account.name if account else "the inviter"


def _pending(session: Session, token: str) -> Connection:
    """The pending, unexpired connection `token` invites to; refused (400/404/409/410) otherwise."""
    tokens.check_shape(token)
    conn = connections.find_invitation(session, token)
    expires = conn.token_expires_at
    if expires is not None and _aware(expires) <= datetime.now(UTC):  # due, not yet swept
        raise Gone(
            f"this invitation expired on {_aware(expires).strftime('%Y-%m-%d %H:%M UTC')}; "
            f"ask {_account_name(session, _inviter_account_id(conn))} for a new one"
        )
    return conn


def _user(session: Session, subject: str) -> AccountUser | None:
    return session.exec(select(AccountUser).where(AccountUser.uid == subject)).first()


def _web_login(session: Session, user: AccountUser) -> WebLogin:
    return WebLogin(
        subject=user.uid,
        email=user.email,
        account=_account_name(session, user.account_id),
        is_admin=user.role == "admin",
    )


def _scope(session: Session, login: WebLogin) -> tuple[AccountUser, Scope]:
    """The login's user as it is now (a removed, disabled or locked one may do nothing) and its scope;
    the page checked the session itself (`session_login`) when it read the cookie."""
    user = _user(session, login.subject)
    if user is None or standing(user) is not None:
        raise Refused(401, "log in first: your login has ended")
    assert user.id is not None
    return user, scope_for_login(
        session, user.account_id, kind="user", principal_id=user.id, name=user.email, role=user.role
    )


class CoreAcceptService:
    """The page's decisions, made by the core in the store (DESIGN-12 §2.3, §2.4, §6.2)."""

    def __init__(self, policy: LoginPolicy | None = None) -> None:
        self._policy = policy

    @property
    def policy(self) -> LoginPolicy:
        return self._policy or shared_policy()

    def invitation(self, token: str) -> InvitationView:
        with _refusals(), session_scope() as session:
            conn = _pending(session, token)
            inviter = conn.created_by or ""
            expires = conn.token_expires_at
            assert expires is not None and conn.invite_email is not None
            return InvitationView(
                inviter_account=_account_name(session, _inviter_account_id(conn)),
                inviter_email=inviter.removeprefix("user:") if inviter.startswith("user:") else None,
                connection_name=(conn.sender_name if conn.direction == "send" else conn.receiver_name) or "",
                direction="send" if conn.direction == "send" else "receive",
                expires_at=_aware(expires),
                invitee_email=conn.invite_email,
            )

    def log_in(self, email: str, password: str, remote_addr: str | None) -> WebLogin:
        if "@" not in email:  # the page is for account users, who log in by e-mail; partners never
            raise Refused(401, WRONG_LOGIN)
        try:
            user = self.policy.password(email, password, remote_addr, PROTOCOL)
        except LoginRefused as refused:
            if refused.banned_for > 0:
                raise Refused(
                    429, f"too many failed logins from your address: try again in {refused.banned_for:.0f} s"
                ) from None
            raise Refused(401, WRONG_LOGIN) from None
        with session_scope() as session:
            row = _user(session, user.uid)
            if user.kind != "user" or row is None:
                raise Refused(401, WRONG_LOGIN)
            return _web_login(session, row)

    def start_session(self, login: WebLogin, remote_addr: str | None, user_agent: str | None) -> str:
        with session_scope() as session:
            user = _user(session, login.subject)
            if user is None or standing(user) is not None:
                raise Refused(401, "log in first: your login has ended")
            _, value = web_sessions.create(
                session, LoginUser.of(user), remote_addr=remote_addr, user_agent=user_agent
            )
            return value

    def session_login(self, cookie: str, remote_addr: str | None) -> WebLogin | None:
        with session_scope() as session:
            found = web_sessions.check(session, cookie, remote_addr)
            if found is None or not isinstance(found.login, AccountUser):
                return None  # partners have nothing to do on the accept page
            return _web_login(session, found.login)

    def end_session(self, cookie: str, remote_addr: str | None) -> None:
        with session_scope() as session:
            found = web_sessions.check(session, cookie, remote_addr)
            if found is not None:
                web_sessions.end(session, found.row, "logout")

    def sign_up(
        self, token: str, account: str, email: str, password: str, remote_addr: str | None
    ) -> WebLogin:
        with _refusals(), session_scope() as session:
            conn = _pending(session, token)
            if conn.signup_account_id is not None:
                raise Conflict("an account was already created with this invitation; log in with it")
            user = accounts.add(session, account, email=email, password=password, actor="web")
            # Guarded: of two sign-ups racing with one token, only the first keeps its account.
            claimed = session.execute(
                update(Connection)
                .where(col(Connection.id) == conn.id, col(Connection.signup_account_id).is_(None))
                .values(signup_account_id=user.account_id)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict("an account was already created with this invitation; log in with it")
            return _web_login(session, user)

    def endpoints(self, login: WebLogin) -> list[EndpointChoice]:
        with session_scope() as session:
            user = _user(session, login.subject)
            if user is None:
                return []
            rows = session.exec(
                select(EndpointRow)
                .where(
                    EndpointRow.account_id == user.account_id,
                    col(EndpointRow.removed_at).is_(None),
                    EndpointRow.type != "mailbox",
                )
                .order_by(col(EndpointRow.name))
            ).all()
            return [EndpointChoice(row.name, row.type) for row in rows]

    def accept(self, token: str, login: WebLogin, form: AcceptForm) -> Outcome:
        with _refusals(), session_scope() as session:
            _, scope = _scope(session, login)
            conn = _pending(session, token)
            inviter = _account_name(session, _inviter_account_id(conn))
            dest = None
            if form.endpoint:
                dest = f"{form.endpoint}:{form.dir}" if form.dir else form.endpoint
            conn = connections.accept_here(
                session, scope, token, name=form.name, dest=dest, outbox=form.outbox
            )
            if conn.direction == "receive":  # the invitee sends
                message = f"active: put files into b2b/{conn.outbox_name}/"
            else:
                message = f"active: files from {inviter} will land in {connections.dest_label(session, conn)}"
            return Outcome(f"Connection {form.name} is active", message)

    def decline(self, token: str) -> Outcome:
        with _refusals(), session_scope() as session:
            conn = _pending(session, token)
            inviter = _account_name(session, _inviter_account_id(conn))
            connections.decline_here(session, token, actor="web")
            assert conn.state == ConnectionState.declined
            return Outcome("Invitation declined", f"{inviter} will see it declined")
