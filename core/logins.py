"""Login names are unique on the whole instance, and stay so.

Partners and account users are two tables with disjoint name syntax: a partner's name never holds
`@` (`core.object_names.validate_name`), an account user's login is an e-mail address and always
does. Each table has an instance-wide unique index (`uq_partner_name`, `accountuser.email`), so no
name can be in both and the database enforces the rest. Removal renames the row
(`<name>.removed.<id>`), freeing the name without deleting history.

This module is the one place that rule is checked before a login is created (`partners.add`,
`accounts.add_user`, `apply`) and the one place a login name is turned into its row (`find_login`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from sqlmodel import Session, col, select

from core import object_names
from core.errors import Conflict, Invalid
from core.models import AccountUser, Partner

LoginKind = Literal["partner", "user"]
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class LoginNameError(Invalid):
    """A login name that cannot be given: malformed (400), or taken somewhere on the instance."""


class LoginNameTaken(LoginNameError, Conflict):
    """The name is some login's already (in which account is never said): 409 on every surface."""

    status = Conflict.status


def normal_email(email: str) -> str:
    """An account user's login as stored: trimmed, NFC, lower-cased; LoginNameError if not an address."""
    cleaned = unicodedata.normalize("NFC", email.strip()).lower()
    if not _EMAIL.fullmatch(cleaned) or len(cleaned) > 254:
        raise LoginNameError(f"not an email address: {email!r}")
    return cleaned


def check_login_name(session: Session, name: str, kind: LoginKind) -> str:
    """The name as it will be stored if it is free for a new login of `kind`; LoginNameError otherwise.

    The message for a taken name reveals that it exists somewhere on the instance (unavoidable for
    one login namespace, as on any sign-up form), never which account holds it.
    """
    if kind == "partner":
        try:
            object_names.validate_name(name)
        except object_names.InvalidName as exc:
            raise LoginNameError(str(exc)) from None
        taken = session.exec(select(Partner.id).where(Partner.name == name)).first() is not None
    else:
        name = normal_email(name)
        taken = session.exec(select(AccountUser.id).where(AccountUser.email == name)).first() is not None
    if taken:
        raise LoginNameTaken(
            f"the login name {name!r} is taken on this instance (login names are unique across accounts)"
        )
    return name


def find_login(session: Session, username: str) -> Partner | AccountUser | None:
    """The live login of that name anywhere on the instance: an account user when the name holds
    `@`, else a partner. Removed rows are nobody (their names were freed)."""
    if "@" in username:
        try:
            email = normal_email(username)
        except LoginNameError:
            return None
        user = session.exec(
            select(AccountUser).where(AccountUser.email == email, col(AccountUser.removed_at).is_(None))
        ).first()
        return user
    return session.exec(
        select(Partner).where(Partner.name == username, col(Partner.removed_at).is_(None))
    ).first()
