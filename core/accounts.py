"""Accounts (tenants) and the people who log in for them, from added to removed.

`add` creates an account with its first admin user in one transaction. An account user's login
is its e-mail address (`core.logins`); its role is admin, operator or read-only
(`core.tenancy.USER_ROLES`). Removing a user renames its row (`<email>.removed.<id>`) so the
address can be used again without adopting its history; removing an account is allowed once it
holds nothing live (no partners, endpoints or data flows), and frees its name the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from core import audit, logins, object_names
from core.crypto import hash_password
from core.errors import StatusError
from core.models import (
    Account,
    AccountUser,
    Connection,
    ConnectionState,
    DataFlow,
    Endpoint,
    LoginFailure,
    Partner,
    utcnow,
)
from core.passwords import check_password
from core.tenancy import USER_ROLES, NoSuchAccount, Role, Scope, find_account

HOME = "home"
# `b2b` prefixes the hidden connection data flows' Prefect names (`b2b:<id>`, core/dataflows.py).
RESERVED_NAMES = frozenset({"b2b"})


class AccountError(StatusError):
    """An account or account user cannot be created, found or changed as asked; raised as
    `AccountError("409: why")`, the status first, as every surface shows it."""

    def __init__(self, text: str) -> None:
        status, sep, message = text.partition(": ")
        if sep and status.isdigit() and len(status) == 3:
            self.status = int(status)
            text = message
        super().__init__(text)


def validate_account_name(name: str) -> str:
    try:
        object_names.validate_name(name)
    except object_names.InvalidName as exc:
        raise AccountError(f"400: {exc}") from None
    if name.lower() in RESERVED_NAMES:
        raise AccountError(f"400: the account name {name!r} is reserved")
    return name


def check_role(role: str) -> Role:
    if role not in USER_ROLES:  # narrows `role` to the Literal
        raise AccountError(f"400: unknown role {role!r} (use {', '.join(USER_ROLES)})")
    return role


def _password_hash(password: str, email: str) -> str:
    # The policy refuses a password holding the login's name: for an address, its local part.
    return hash_password(check_password(password, email.split("@", 1)[0]))


def add(session: Session, name: str, *, email: str, password: str, actor: str = "cli") -> AccountUser:
    """A new account and its admin user (who logs in with `email`), in the caller's transaction."""
    validate_account_name(name)
    if find_account(session, name) is not None:
        raise AccountError(f"409: account {name!r} already exists")
    email = logins.check_login_name(session, email, "user")
    password_hash = _password_hash(password, email)
    account = Account(name=name)
    session.add(account)
    session.flush()
    assert account.id is not None
    user = AccountUser(
        account_id=account.id, email=email, password_hash=password_hash, role="admin", created_by=actor
    )
    session.add(user)
    session.flush()
    audit.record(session, "account.add", actor=actor, account_id=account.id, target=name, admin=email)
    return user


@dataclass(frozen=True)
class AccountSummary:
    name: str
    users: int
    partners: int
    created_at: datetime
    connections: int = 0  # pending and active, on either side


def _live_connections(session: Session) -> dict[int, int]:
    """How many pending or active connections each account is a side of."""
    live = (ConnectionState.pending, ConnectionState.active)
    found: dict[int, int] = {}
    for side in (Connection.sender_account_id, Connection.receiver_account_id):
        rows = session.exec(
            select(col(side), func.count())
            .where(col(Connection.state).in_(live), col(side).is_not(None))
            .group_by(col(side))
        ).all()
        for account_id, n in rows:
            if account_id is not None:
                found[account_id] = found.get(account_id, 0) + n
    return found


def list_all(session: Session) -> list[AccountSummary]:
    """Every live account with how many users, partners and live connections it has, by name (the
    instance's view)."""

    def counts(model: type[AccountUser] | type[Partner]) -> dict[int, int]:
        rows = session.exec(
            select(col(model.account_id), func.count())
            .where(col(model.removed_at).is_(None))
            .group_by(col(model.account_id))
        ).all()
        return {account_id: n for account_id, n in rows}

    users, partners, links = counts(AccountUser), counts(Partner), _live_connections(session)
    accounts = session.exec(
        select(Account).where(~col(Account.name).like("%.removed.%")).order_by(Account.name)
    ).all()
    return [
        AccountSummary(
            a.name, users.get(a.id or 0, 0), partners.get(a.id or 0, 0), a.created_at, links.get(a.id or 0, 0)
        )
        for a in accounts
    ]


def remove(session: Session, name: str, *, actor: str = "cli") -> None:
    """Remove an account that holds nothing live any more; `home` stays."""
    if name == HOME:
        raise AccountError("400: the home account cannot be removed")
    account = find_account(session, name)
    if account is None:
        raise NoSuchAccount(name)
    live = []
    for model, what in ((Partner, "partners"), (Endpoint, "endpoints"), (DataFlow, "data flows")):
        n = session.exec(
            select(func.count())
            .select_from(model)
            .where(model.account_id == account.id, col(model.removed_at).is_(None))
        ).one()
        if n:
            live.append(f"{n} {what}")
    if live:
        raise AccountError(
            f"409: account {name!r} still has {', '.join(live)}: remove them first "
            f"(tradelane partner|endpoint|flow remove ... --account {name})"
        )
    scope = Scope(account.id or 0, account.name, "instance", actor)
    for user in list_users(session, scope):
        _retire_user(session, user)
    account.name = f"{name}.removed.{account.id}"
    session.add(account)
    audit.record(session, "account.remove", actor=actor, account_id=account.id, target=name)


# -- account users --------------------------------------------------------------------------------


def add_user(
    session: Session, scope: Scope, email: str, *, password: str, role: str = "read-only"
) -> AccountUser:
    scope.require_to("users.change")
    email = logins.check_login_name(session, email, "user")
    user = AccountUser(
        account_id=scope.account_id,
        email=email,
        password_hash=_password_hash(password, email),
        role=check_role(role),
        created_by=scope.actor,
    )
    session.add(user)
    session.flush()
    audit.record(
        session, "account.user.add", actor=scope.actor, account_id=scope.account_id, target=email, role=role
    )
    return user


def get_user(session: Session, scope: Scope, email: str) -> AccountUser | None:
    try:
        email = logins.normal_email(email)
    except logins.LoginNameError:
        return None
    return session.exec(
        select(AccountUser).where(
            AccountUser.account_id == scope.account_id,
            AccountUser.email == email,
            col(AccountUser.removed_at).is_(None),
        )
    ).first()


def require_user(session: Session, scope: Scope, email: str) -> AccountUser:
    user = get_user(session, scope, email)
    if user is None:
        raise AccountError(f"404: no user {email!r} in account {scope.account_name!r}")
    return user


def list_users(session: Session, scope: Scope) -> list[AccountUser]:
    return list(
        session.exec(
            select(AccountUser)
            .where(AccountUser.account_id == scope.account_id, col(AccountUser.removed_at).is_(None))
            .order_by(AccountUser.email)
        )
    )


def _admins_left(session: Session, scope: Scope, without: AccountUser) -> int:
    return sum(
        1 for u in list_users(session, scope) if u.role == "admin" and u.enabled and u.id != without.id
    )


def set_user(
    session: Session,
    scope: Scope,
    email: str,
    *,
    password: str | None = None,
    role: str | None = None,
    enabled: bool | None = None,
) -> list[str]:
    """Change a user's password, role or enabled state; what changed, in words. A new password,
    disabling, or a lower role ends the user's sessions and tokens."""
    scope.require_to("users.change")
    user = require_user(session, scope, email)
    said: list[str] = []
    if role is not None and role != user.role:
        new_role = check_role(role)
        if user.role == "admin" and not _admins_left(session, scope, user):
            raise AccountError(f"409: {user.email} is the account's last admin; make another admin first")
        user.role = new_role
        user.sessions_ended_at = utcnow()
        said.append(f"role {new_role} (its sessions end)")
    if enabled is not None and enabled != user.enabled:
        if not enabled and user.role == "admin" and not _admins_left(session, scope, user):
            raise AccountError(f"409: {user.email} is the account's last admin; make another admin first")
        user.enabled = enabled
        if not enabled:
            user.sessions_ended_at = utcnow()
        said.append("enabled" if enabled else "disabled (its sessions end)")
    if password:
        user.password_hash = _password_hash(password, user.email)
        user.sessions_ended_at = utcnow()
        said.append("password changed (its sessions end)")
    if said:
        session.add(user)
        audit.record(
            session,
            "account.user.set",
            actor=scope.actor,
            account_id=scope.account_id,
            target=user.email,
            changes=[s for s in said if not s.startswith("password")],
            password=bool(password),
        )
    return said


def unlock_user(session: Session, scope: Scope, email: str) -> bool:
    """Lift a lock set on distributed evidence of password guessing; True if the user was locked."""
    scope.require_to("users.change")
    user = require_user(session, scope, email)
    was_locked = user.locked_until is not None and user.locked_until > utcnow()
    user.locked_until = None
    session.add(user)
    session.exec(delete(LoginFailure).where(col(LoginFailure.username) == user.email))
    audit.record(
        session, "account.user.unlock", actor=scope.actor, account_id=scope.account_id, target=user.email
    )
    return was_locked


def _retire_user(session: Session, user: AccountUser) -> None:
    now = utcnow()
    user.email = f"{user.email}.removed.{user.id}"
    user.enabled = False
    user.password_hash = None
    user.removed_at = user.sessions_ended_at = now
    session.add(user)


def remove_user(session: Session, scope: Scope, email: str) -> None:
    """Remove a user: its login ends at once and its address is free again; the row stays for history."""
    scope.require_to("users.change")
    user = require_user(session, scope, email)
    if user.role == "admin" and not _admins_left(session, scope, user):
        raise AccountError(f"409: {user.email} is the account's last admin; make another admin first")
    address = user.email
    _retire_user(session, user)
    audit.record(
        session, "account.user.remove", actor=scope.actor, account_id=scope.account_id, target=address
    )
