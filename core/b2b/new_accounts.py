"""Creating an account for `connect accept --new-account` and for tests.

A stand-in until `core/accounts.py` (accounts as tenants) lands: at merge `create_account` points at
`accounts.add`, which also creates the account's admin user from the e-mail and password checked here.
"""

from __future__ import annotations

from sqlmodel import Session, select

from core import audit
from core.errors import Conflict, Invalid
from core.models import Account
from core.object_names import InvalidName, validate_name
from core.partners import PartnerError, check_email
from core.passwords import WeakPassword, check_password

# `b2b` prefixes the hidden connection data flows' Prefect names (`b2b:<id>`).
RESERVED_NAMES = frozenset({"b2b"})


def create_account(
    session: Session, name: str, *, email: str | None = None, password: str | None = None, actor: str = "cli"
) -> Account:
    """A new account named `name` (its admin's e-mail and password are checked for the policy)."""
    try:
        validate_name(name)
    except InvalidName as exc:
        raise Invalid(str(exc)) from None
    if name.lower() in RESERVED_NAMES:
        raise Invalid(f"the account name {name!r} is reserved")
    if email is not None:
        try:
            check_email(email)
        except PartnerError as exc:
            raise Invalid(str(exc)) from None
    if password is not None:
        try:
            check_password(password, (email or name).split("@", 1)[0])
        except WeakPassword as exc:
            raise Invalid(str(exc)) from None
    if session.exec(select(Account).where(Account.name == name)).first() is not None:
        raise Conflict(f"account {name!r} already exists")
    account = Account(name=name)
    session.add(account)
    session.flush()
    audit.record(session, "account.add", actor=actor, account_id=account.id, target=name, admin=email)
    return account
