"""Who calls a connection operation, in which account: the fields of `core.tenancy.Scope`.

Until accounts as tenants land (DESIGN-12 §1.4), connections take this small stand-in with the
same attribute names; at merge it becomes an alias of `Scope`, and callers build it the way every
surface builds a scope (the CLI from `--account`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlmodel import Session, select

from core.errors import Forbidden, NotFound
from core.models import Account

Role = Literal["instance", "admin", "operator", "read-only", "partner", "system", "peer"]


@dataclass(frozen=True)
class Caller:
    account_id: int
    account_name: str
    role: Role
    actor: str  # the audit actor: "cli", "user:alice@acme.example"
    user_id: int | None = None

    def require(self, *roles: Role) -> None:
        """Refuse unless the role is one of `roles` (the instance operator, the CLI, may do anything)."""
        if self.role != "instance" and self.role not in roles:
            raise Forbidden(f"this needs the {' or '.join(roles)} role; this login is {self.role}")


def account_named(session: Session, name: str) -> Account:
    account = session.exec(select(Account).where(Account.name == name)).first()
    if account is None:
        raise NotFound(f"no account named {name!r}")
    return account


def cli_caller(session: Session, account_name: str) -> Caller:
    """The CLI's caller: the instance operator acting in the account it names (`--account`)."""
    account = account_named(session, account_name)
    assert account.id is not None
    return Caller(account.id, account.name, "instance", "cli")


def system_caller(session: Session, account_id: int, actor: str = "flow") -> Caller:
    account = session.get(Account, account_id)
    assert account is not None and account.id is not None
    return Caller(account.id, account.name, "system", actor)
