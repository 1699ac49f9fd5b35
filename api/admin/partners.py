"""/api/admin/partners: the account's partner logins, as `tradelane partner ...` manages them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.admin.deps import REFUSALS, AdminScope, BoundedRoute, changing, needs
from api.admin.schemas import (
    KeyAdd,
    PartnerChanged,
    PartnerCreate,
    PartnerDetail,
    PartnerPublic,
    PartnerRemoved,
    PartnerSettings,
    PasswordChange,
    Unlocked,
)
from api.deps import SessionDep
from api.ids import RowId
from core import partners
from core.tenancy import Scope

router = APIRouter(prefix="/partners", tags=["admin: partners"], route_class=BoundedRoute)

Changer = Annotated[Scope, needs("partners.change")]


@router.get("", responses=REFUSALS)
def list_partners(scope: AdminScope, session: SessionDep) -> list[PartnerPublic]:
    """The account's partners (disabled ones too), by name."""
    return [PartnerPublic.of(p) for p in partners.list_all(session, scope)]


@router.get("/{name}", responses=REFUSALS)
def show_partner(name: str, scope: AdminScope, session: SessionDep) -> PartnerDetail:
    """One partner, with its SSH keys' fingerprints."""
    return PartnerDetail.of_detail(partners.require(session, scope, name))


@router.post("", status_code=201, **changing("partners.change"))
def add_partner(new: PartnerCreate, scope: Changer, session: SessionDep, response: Response) -> PartnerDetail:
    """A new partner login with empty upload/ and download/ folders."""
    partner = partners.add(
        session,
        scope,
        new.name,
        password=new.password,
        ssh_public_keys=new.ssh_public_keys,
        email=new.email,
    )
    response.headers["Location"] = f"/api/admin/partners/{partner.name}"
    return PartnerDetail.of_detail(partner)


@router.patch("/{name}", **changing("partners.change"))
def change_partner(name: str, change: PartnerSettings, scope: Changer, session: SessionDep) -> PartnerChanged:
    """Change some of a partner's settings (the fields given); `changed` says what changed, in words.
    Disabling ends its sessions and tokens; an allow-list ends those from addresses it leaves out."""
    partner = partners.require(session, scope, name)
    said = partners.configure(session, scope, partner, **change.changes())
    return PartnerChanged(**PartnerDetail.of_detail(partner).model_dump(), changed=said.said)


@router.put("/{name}/password", status_code=204, **changing("partners.change"))
def set_password(name: str, change: PasswordChange, scope: Changer, session: SessionDep) -> None:
    """A new password (the password policy applies); the partner's sessions and tokens end."""
    partners.set_password(session, scope, partners.require(session, scope, name), change.password)


@router.post("/{name}/keys", status_code=201, **changing("partners.change"))
def add_key(name: str, key: KeyAdd, scope: Changer, session: SessionDep) -> PartnerDetail:
    """Let the partner log in to SFTP with this public key."""
    return PartnerDetail.of_detail(partners.add_key(session, scope, name, key.key))


@router.delete("/{name}/keys/{index}", **changing("partners.change"))
def remove_key(name: str, index: RowId, scope: Changer, session: SessionDep) -> PartnerDetail:
    """Remove key number `index` (from 1, as listed); a session opened with it ends."""
    partners.remove_key(session, scope, name, index)
    return PartnerDetail.of_detail(partners.require(session, scope, name))


@router.post("/{name}/unlock", **changing("partners.change"))
def unlock_partner(name: str, scope: Changer, session: SessionDep) -> Unlocked:
    """Lift the lock set after failed logins from several addresses (not `enabled: false`, the
    operator's own choice). Address bans are the instance operator's (`tradelane partner unlock
    --address`)."""
    return Unlocked(name=name, was_locked=partners.unlock(session, scope, name))


@router.delete("/{name}", **changing("partners.change"))
def remove_partner(
    name: str,
    scope: Changer,
    session: SessionDep,
    force: Annotated[bool, Query(description="disable the data flows and AS2 profiles that use it")] = False,
    purge: Annotated[
        bool, Query(description="delete its files instead of keeping them (admin only)")
    ] = False,
) -> PartnerRemoved:
    """Remove a partner: its login ends, its name is free again, its files are kept out of every
    new partner's reach (or deleted with `purge`, which needs the role admin). Refused while data
    flows or AS2 profiles use it, naming them, unless `force` (they are then disabled)."""
    removal = partners.remove(session, scope, name, purge=purge, force=force)
    return PartnerRemoved(
        name=removal.name,
        flows_disabled=removal.flows_disabled,
        as2_disabled=removal.as2_disabled,
        purged=removal.purged,
    )
