"""Accounts are tenants: the one context object every tenant-facing service function takes.

A `Scope` says which account a call acts in, with which role and for whom (the audit actor). Each
surface builds it in exactly one way: the CLI from `--account`/`TRADELANE_ACCOUNT`
(`scope_for_cli`: the instance operator selecting an account), REST/SFTP/FTP from the
authenticated login's own row (`scope_for_login`), and the dispatcher, flows and workers for rows
they already hold (`system_scope`). Queries then filter by `scope.account_id`, so an
object of another account is simply not found: "no partner named 'x'", never "forbidden".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from sqlmodel import Session, select

from core.errors import Forbidden
from core.models import Account
from core.roles import Action, may, roles_for

Role = Literal["instance", "admin", "operator", "read-only", "partner", "system", "peer"]
# The account users' roles (account_user.role), most to least powerful.
USER_ROLES: tuple[Role, ...] = ("admin", "operator", "read-only")


class NoSuchAccount(LookupError):
    """An account name that names no account."""

    def __str__(self) -> str:
        return f"no account named {self.args[0]!r} (tradelane account list)"


class RoleRefused(Forbidden):
    """The login's role may not do this; the message says which roles may (403 on every surface)."""


@dataclass(frozen=True)
class Scope:
    """Which account a call acts in, as whom."""

    account_id: int
    account_name: str
    role: Role
    actor: str  # the audit actor: "cli", "user:alice@acme.example", "partner:acme", "flow"
    user_id: int | None = None
    partner_id: int | None = None

    def require(self, *roles: Role) -> None:
        """Refuse unless the scope's role is one of `roles` (the instance operator may do anything)."""
        if self.role != "instance" and self.role not in roles:
            raise RoleRefused(f"this needs the role {' or '.join(roles)}; this login is {self.role}")

    def require_to(self, action: Action) -> None:
        """Refuse unless the scope's role may do `action` (core/roles.py, the one table)."""
        if not may(self, action):
            self.require(*roles_for(action))


def account_name(account_id: int) -> str:
    """An account's name by id, for the paths of its mailboxes. Cached: an account keeps its name
    while anything of it lives (removal renames only an empty account), and ids are never reused."""
    from core.config import get_settings

    return _account_name(get_settings().db_url, account_id)


@functools.lru_cache(maxsize=1024)
def _account_name(db_url: str, account_id: int) -> str:
    from core.db import session_scope

    with session_scope() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise NoSuchAccount(str(account_id))
        return account.name


def find_account(session: Session, name: str) -> Account | None:
    return session.exec(select(Account).where(Account.name == name)).first()


def scope_for_cli(session: Session, account_name: str, actor: str = "cli") -> Scope:
    """The CLI's scope: the instance operator acting in the account it names."""
    account = find_account(session, account_name)
    if account is None:
        raise NoSuchAccount(account_name)
    assert account.id is not None
    return Scope(account_id=account.id, account_name=account.name, role="instance", actor=actor)


def scope_for_login(
    session: Session,
    account_id: int,
    *,
    kind: Literal["partner", "user"],
    principal_id: int,
    name: str,
    role: str | None = None,
) -> Scope:
    """The scope of an authenticated login: the account comes from the login's row, never the request.
    A user's role is its row's; an unknown one counts as read-only."""
    account = session.get(Account, account_id)
    assert account is not None and account.id is not None  # a login row always names its account
    if kind == "partner":
        return Scope(account.id, account.name, "partner", f"partner:{name}", partner_id=principal_id)
    user_role: Role = "read-only"
    for known in USER_ROLES:
        if role == known:
            user_role = known
    return Scope(account.id, account.name, user_role, f"user:{name}", user_id=principal_id)


def system_scope(session: Session, account_id: int, actor: str = "flow") -> Scope:
    """For the dispatcher, flows and workers acting on rows they already chose."""
    account = session.get(Account, account_id)
    assert account is not None and account.id is not None
    return Scope(account.id, account.name, "system", actor)


def instance_account_id(session: Session) -> int:
    """The account events that belong to no account are kept under: the instance's own, `home`
    (an AS2 message addressed to no organization of ours). Never a scope for tenant data."""
    account = find_account(session, "home")
    assert account is not None and account.id is not None  # init_db creates it
    return account.id
