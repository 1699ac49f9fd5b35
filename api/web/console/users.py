"""Console user pages (admins only): the account's users, add one, change a role or password,
disable, enable, unlock, remove. Every change is core's (`accounts.add_user`, `set_user`,
`unlock_user`, `remove_user`), with its rules (the last admin stays an admin) and words.

    GET  /console/users                     list + add form
    POST /console/users                     add (e-mail, password, role)
    POST /console/users/{email}/{action}    role | password | disable | enable | unlock | remove
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import APIRouter
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from api.web.console.deps import ConsoleError, ConsoleFormDep, ConsoleScope, allowed, back, in_database, page
from core import accounts
from core.errors import StatusError, said
from core.models import AccountUser
from core.tenancy import USER_ROLES, Scope

router = APIRouter(prefix="/console/users")
LIST = "/console/users"
ACTIONS = ("role", "password", "disable", "enable", "unlock", "remove")


@dataclass(frozen=True)
class Shown:
    email: str
    url: str
    role: str
    state: str


def _state(user: AccountUser) -> str:
    if not user.enabled:
        return "disabled"
    locked = user.locked_until
    if locked is not None:
        locked = locked if locked.tzinfo else locked.replace(tzinfo=UTC)
        if locked > datetime.now(UTC):
            return f"locked until {locked:%Y-%m-%d %H:%M} UTC"
    return "active"


def _listing(session: Session, scope: Scope) -> list[Shown]:
    return [
        Shown(u.email, f"{LIST}/{quote(u.email, safe='')}", u.role, _state(u))
        for u in accounts.list_users(session, scope)
    ]


def _status(error: Exception) -> int:
    return error.status if isinstance(error, StatusError) else 400


async def _page(
    request: Request, scope: Scope, status: int = 200, problem: str = "", **given: str
) -> Response:
    users = await in_database(_listing, scope)
    return page(
        request,
        "console/users.html",
        scope,
        status,
        users=users,
        roles=USER_ROLES,
        problem=problem,
        given=given,
    )


@router.get("")
async def list_users(request: Request, scope: ConsoleScope) -> Response:
    allowed(scope, "users.change")
    return await _page(request, scope)


@router.post("")
async def add_user(request: Request, fields: ConsoleFormDep, scope: ConsoleScope) -> Response:
    allowed(scope, "users.change")
    email = fields.get("email", "").strip()
    role = fields.get("role", "read-only")

    def add(session: Session) -> None:
        accounts.add_user(session, scope, email, password=fields.get("password", ""), role=role)

    try:
        await in_database(add)
    except ValueError as error:  # StatusError, WeakPassword: the message never holds a password
        return await _page(request, scope, _status(error), said(error), email=email, role=role)
    return back(LIST, "added", email)


def _change(session: Session, scope: Scope, email: str, action: str, fields: dict[str, str]) -> str:
    if action == "remove":
        accounts.remove_user(session, scope, email)
        return "removed"
    if action == "unlock":
        accounts.unlock_user(session, scope, email)
        return "saved"
    if action == "password":
        if not fields.get("password"):
            raise accounts.AccountError("400: type the new password")
        changed = accounts.set_user(session, scope, email, password=fields["password"])
    elif action == "role":
        changed = accounts.set_user(session, scope, email, role=fields.get("role", ""))
    else:
        changed = accounts.set_user(session, scope, email, enabled=action == "enable")
    return "saved" if changed else "unchanged"


@router.post("/{email}/{action}")
async def change_user(
    request: Request, fields: ConsoleFormDep, scope: ConsoleScope, email: str, action: str
) -> Response:
    if action not in ACTIONS:
        raise ConsoleError(404, f"no user action {action!r}")
    allowed(scope, "users.change")
    try:
        done = await in_database(_change, scope, email, action, fields)
    except ValueError as error:
        return await _page(request, scope, _status(error), said(error))
    return back(LIST, done, email)
