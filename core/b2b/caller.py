"""Who calls a connection operation, in which account: a `core.tenancy.Scope`, built the way every
surface builds one (the CLI from `--account`, the API from the login, flows for the rows they hold)."""

from __future__ import annotations

from sqlmodel import Session, select

from core.errors import NotFound
from core.models import Account
from core.tenancy import Scope, scope_for_cli
from core.tenancy import Scope as Caller
from core.tenancy import system_scope as system_caller

__all__ = ["Caller", "account_named", "cli_caller", "system_caller"]


def account_named(session: Session, name: str) -> Account:
    account = session.exec(select(Account).where(Account.name == name)).first()
    if account is None:
        raise NotFound(f"no account named {name!r}")
    return account


def cli_caller(session: Session, account_name: str) -> Scope:
    """The CLI's caller: the instance operator acting in the account it names (`--account`)."""
    account_named(session, account_name)  # a 404 in the connections' own words
    return scope_for_cli(session, account_name)
