"""Dependencies the routes share, as `Annotated` aliases: SessionDep, SettingsDep, CurrentPartner, ..."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session, select

from api import errors
from api.auth import TokenError, decode_access_token, issued_at
from api.space import Space
from core.config import Settings, get_settings
from core.db import session_scope
from core.login import Standing, session_refusal, standing
from core.models import Partner

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
SettingsDep = Annotated[Settings, Depends(get_settings)]
TokenDep = Annotated[str | None, Depends(bearer_token)]


def get_current_partner(token: TokenDep, request: Request) -> Partner:
    """The partner the bearer token was issued to, if its login still holds; 401 otherwise.

    A token dies with the partner's sessions: when it is removed, disabled or locked, its password
    changes, or the request comes from outside its allow-list (`core.login.session_refusal`).

    Uses its own short session rather than SessionDep: an upload or download can last minutes
    and must not hold a database connection (or an open SQLite read transaction) meanwhile.
    """
    if not token:
        raise errors.Unauthorized("missing bearer token: authenticate at POST /api/authentication")
    try:
        claims = decode_access_token(token)
    except TokenError as exc:
        raise errors.Unauthorized(str(exc)) from None
    with session_scope() as session:
        partner = session.exec(select(Partner).where(Partner.uid == claims["sub"])).first()
    if partner is None or standing(partner) in (Standing.REMOVED, Standing.DISABLED):
        raise errors.Unauthorized("this login is disabled or no longer exists")
    remote_addr = request.client.host if request.client else None
    if session_refusal(partner, remote_addr, issued_at(claims)) is not None:
        raise errors.Unauthorized("this token is no longer valid: authenticate again")
    return partner


CurrentPartner = Annotated[Partner, Depends(get_current_partner)]


def get_remote_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


RemoteAddr = Annotated[str | None, Depends(get_remote_addr)]


def get_space(partner: CurrentPartner) -> Space:
    return Space(partner)


SpaceDep = Annotated[Space, Depends(get_space)]


@dataclass(frozen=True)
class Page:
    start_index: int
    count: int

    def of(self, items: Sequence[T]) -> list[T]:
        return list(items[self.start_index : self.start_index + self.count])


def get_page(
    start_index: Annotated[int, Query(alias="startIndex", ge=0, description="0-based offset")] = 0,
    count: Annotated[
        int, Query(ge=0, description=f"page size; more than {MAX_PAGE_SIZE} is cut to {MAX_PAGE_SIZE}")
    ] = DEFAULT_PAGE_SIZE,
) -> Page:
    return Page(start_index, min(count, MAX_PAGE_SIZE))


PageDep = Annotated[Page, Depends(get_page)]
