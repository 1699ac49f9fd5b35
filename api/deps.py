"""Dependencies the routes share, as `Annotated` aliases: SessionDep, SettingsDep, CurrentLogin,
CurrentPartner, ScopeDep, SpaceDep, ..."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import bindparam
from sqlmodel import Session, select

from api import errors
from api.auth import TokenError, decode_access_token, issued_at
from api.space import Space
from api.user_space import UserSpace
from core.config import Settings, get_settings
from core.db import autocommit, session_scope
from core.login import Standing, session_refusal, standing
from core.models import AccountUser, Partner
from core.tenancy import Scope, scope_for_login

T = TypeVar("T")

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

# auto_error=False: a missing token is answered by get_current_partner with our own message.
bearer_token = OAuth2PasswordBearer(tokenUrl="/api/authentication", auto_error=False)


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


# scope="function": commit before the response goes out, so what a client was told has happened
# (a login, a delete) is in the database by then, and a failed commit is a 500, not a silent loss.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def settings_dependency() -> Settings:
    return get_settings()


# The dependencies below that only look at what they are given are `async def`: FastAPI runs a
# plain `def` dependency in a worker thread, a hand-off that cost more than the work itself.
SettingsDep = Annotated[Settings, Depends(settings_dependency)]
TokenDep = Annotated[str | None, Depends(bearer_token)]


def get_current_login(token: TokenDep, request: Request) -> Partner | AccountUser:
    """The partner or account user the bearer token was issued to, if its login still holds; 401
    otherwise.

    A token dies with the login's sessions: when it is removed, disabled or locked, its password
    (or a user's role) changes, or the request comes from outside its allow-list
    (`core.login.session_refusal`).

    Uses its own short session rather than SessionDep: an upload or download can last minutes
    and must not hold a database connection (or an open SQLite read transaction) meanwhile.
    """
    if not token:
        raise errors.Unauthorized("missing bearer token: authenticate at POST /api/authentication")
    try:
        claims = decode_access_token(token)
    except TokenError as exc:
        raise errors.Unauthorized(str(exc)) from None
    partner: Partner | AccountUser | None
    with autocommit() as connection, Session(connection) as session:  # one read: one round trip
        by_uid = {"uid": claims["sub"]}
        if claims["knd"] == "u":
            partner = session.exec(_USER_BY_UID, params=by_uid).first()
        else:
            partner = session.exec(_PARTNER_BY_UID, params=by_uid).first()
    if partner is None or standing(partner) in (Standing.REMOVED, Standing.DISABLED):
        raise errors.Unauthorized("this login is disabled or no longer exists")
    remote_addr = request.client.host if request.client else None
    if session_refusal(partner, remote_addr, issued_at(claims)) is not None:
        raise errors.Unauthorized("this token is no longer valid: authenticate again")
    return partner


# Built once: every request with a token asks one of them (building the statement each time cost
# a third of the lookup's CPU).
_PARTNER_BY_UID = select(Partner).where(Partner.uid == bindparam("uid"))
_USER_BY_UID = select(AccountUser).where(AccountUser.uid == bindparam("uid"))

CurrentLogin = Annotated[Partner | AccountUser, Depends(get_current_login)]

USER_HAS_NO_FILES = (
    "this login is an account user: its home holds b2b/, the account's outboxes, and no files of its own"
)


async def get_current_partner(login: CurrentLogin) -> Partner:
    """The partner logged in; 403 for an account user (a partner-only route)."""
    if not isinstance(login, Partner):
        raise errors.Forbidden(USER_HAS_NO_FILES)
    return login


CurrentPartner = Annotated[Partner, Depends(get_current_partner)]


async def get_current_user(login: CurrentLogin) -> AccountUser:
    """The account user logged in; 403 for a partner (a route of the account's own users)."""
    if not isinstance(login, AccountUser):
        raise errors.Forbidden("only the account's users may do this; this is a partner login")
    return login


CurrentUser = Annotated[AccountUser, Depends(get_current_user)]


def get_scope(login: CurrentLogin) -> Scope:
    """The login's scope: its own account, never one a request names."""
    assert login.id is not None
    kind: Literal["partner", "user"] = "user" if isinstance(login, AccountUser) else "partner"
    role = login.role if isinstance(login, AccountUser) else None
    with session_scope() as session:
        return scope_for_login(
            session, login.account_id, kind=kind, principal_id=login.id, name=login.name, role=role
        )


ScopeDep = Annotated[Scope, Depends(get_scope)]


async def get_remote_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


RemoteAddr = Annotated[str | None, Depends(get_remote_addr)]


async def get_space(login: CurrentLogin) -> Space | UserSpace:
    """The home the login sees: a partner's mailbox, or an account user's `b2b/` tree."""
    return UserSpace(login) if isinstance(login, AccountUser) else Space(login)


SpaceDep = Annotated[Space | UserSpace, Depends(get_space)]


async def get_partner_space(partner: CurrentPartner) -> Space:
    return Space(partner)


# Routes about files in a partner's mailbox (an account user has none: 403).
PartnerSpaceDep = Annotated[Space, Depends(get_partner_space)]


@dataclass(frozen=True)
class Page:
    start_index: int
    count: int

    def of(self, items: Sequence[T]) -> list[T]:
        return list(items[self.start_index : self.start_index + self.count])


async def get_page(
    start_index: Annotated[int, Query(alias="startIndex", ge=0, description="0-based offset")] = 0,
    count: Annotated[
        int, Query(ge=0, description=f"page size; more than {MAX_PAGE_SIZE} is cut to {MAX_PAGE_SIZE}")
    ] = DEFAULT_PAGE_SIZE,
) -> Page:
    return Page(start_index, min(count, MAX_PAGE_SIZE))


PageDep = Annotated[Page, Depends(get_page)]
