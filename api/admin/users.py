"""/api/admin/users and /api/admin/me: the account's users (admins manage them) and who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from api.admin.deps import REFUSALS, AdminScope, BoundedRoute, changing, needs
from api.admin.schemas import Me, Unlocked, UserChanged, UserCreate, UserPublic, UserUpdate
from api.deps import CurrentUser, SessionDep
from core import accounts
from core.tenancy import Scope

router = APIRouter(prefix="/users", tags=["admin: users"], route_class=BoundedRoute)
me_router = APIRouter(tags=["admin: users"], route_class=BoundedRoute)

Admin = Annotated[Scope, needs("users.change")]


@me_router.get("/me", responses=REFUSALS)
def me(user: CurrentUser, scope: AdminScope) -> Me:
    """The account this token acts in, its role, and the actions (core/roles.py) it may do."""
    return Me.of(scope, user.email)


# Users are the admins' business, reading them included (the console shows them to admins only).
@router.get("", **changing("users.change"))
def list_users(scope: Admin, session: SessionDep) -> list[UserPublic]:
    """The account's users: address, role, state."""
    return [UserPublic.of(u) for u in accounts.list_users(session, scope)]


@router.post("", status_code=201, **changing("users.change"))
def add_user(new: UserCreate, scope: Admin, session: SessionDep, response: Response) -> UserPublic:
    """Let an e-mail address log in for the account with a role (the password policy applies)."""
    user = accounts.add_user(session, scope, new.email, password=new.password, role=new.role)
    response.headers["Location"] = f"/api/admin/users/{user.email}"
    return UserPublic.of(user)


@router.patch("/{email}", **changing("users.change"))
def change_user(email: str, change: UserUpdate, scope: Admin, session: SessionDep) -> UserChanged:
    """A new password, role or enabled state; each ends the user's sessions and tokens (a higher
    role too). The account's last admin cannot be demoted or disabled."""
    said = accounts.set_user(
        session, scope, email, password=change.password, role=change.role, enabled=change.enabled
    )
    user = accounts.require_user(session, scope, email)
    return UserChanged(**UserPublic.of(user).model_dump(), changed=said)


@router.post("/{email}/unlock", **changing("users.change"))
def unlock_user(email: str, scope: Admin, session: SessionDep) -> Unlocked:
    """Lift the lock set after failed logins from several addresses."""
    return Unlocked(name=email, was_locked=accounts.unlock_user(session, scope, email))


@router.delete("/{email}", status_code=204, **changing("users.change"))
def remove_user(email: str, scope: Admin, session: SessionDep) -> None:
    """Remove a user: its login ends at once and its address is free again."""
    accounts.remove_user(session, scope, email)
