"""/api/admin/flows: data flows (source → checks → destination), as `tradelane flow ...` manages them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.admin.deps import REFUSALS, AdminScope, BoundedRoute, changing, needs
from api.admin.flow_changes import add_flow, update_flow
from api.admin.schemas import FlowChanged, FlowCreate, FlowPublic, FlowRemoved, FlowUpdate
from api.deps import SessionDep
from core import dataflows
from core.tenancy import Scope

router = APIRouter(prefix="/flows", tags=["admin: flows"], route_class=BoundedRoute)

Changer = Annotated[Scope, needs("flows.change")]


@router.get("", responses=REFUSALS)
def list_flows(scope: AdminScope, session: SessionDep) -> list[FlowPublic]:
    """The account's data flows, by name."""
    return [FlowPublic.of(session, flow) for flow in dataflows.list_all(session, scope)]


@router.get("/{name}", responses=REFUSALS)
def show_flow(name: str, scope: AdminScope, session: SessionDep) -> FlowPublic:
    """One data flow."""
    return FlowPublic.of(session, dataflows.require(session, scope, name))


@router.post("", status_code=201, **changing("flows.change"))
def add(new: FlowCreate, scope: Changer, session: SessionDep, response: Response) -> FlowPublic:
    """A new data flow; it is served as a Prefect deployment within seconds."""
    flow = add_flow(session, scope, new)
    response.headers["Location"] = f"/api/admin/flows/{flow.name}"
    return FlowPublic.of(session, flow)


@router.patch("/{name}", **changing("flows.change"))
def change(name: str, change: FlowUpdate, scope: Changer, session: SessionDep) -> FlowChanged:
    """Change some settings (the fields given); they apply to files that arrive from now on and to
    pending transfers not yet started. `changed` says what changed, in words."""
    said = update_flow(session, scope, name, change)
    flow = dataflows.require(session, scope, name)
    return FlowChanged(**FlowPublic.of(session, flow).model_dump(), changed=said)


@router.post("/{name}/enable", **changing("flows.change"))
def enable(name: str, scope: Changer, session: SessionDep) -> FlowPublic:
    """Carry files again (pending ones go out)."""
    return FlowPublic.of(session, dataflows.set_enabled(session, scope, name, True))


@router.post("/{name}/disable", **changing("flows.change"))
def disable(name: str, scope: Changer, session: SessionDep) -> FlowPublic:
    """Stop taking new files into this data flow."""
    return FlowPublic.of(session, dataflows.set_enabled(session, scope, name, False))


@router.delete("/{name}", **changing("flows.change"))
def remove(
    name: str,
    scope: Changer,
    session: SessionDep,
    force: Annotated[
        bool, Query(description="stop its pending and running transfers (marked failed)")
    ] = False,
) -> FlowRemoved:
    """Remove a data flow; its transfer history stays. Refused while transfers are pending or
    running, unless `force`."""
    removal = dataflows.remove(session, scope, name, force=force)
    return FlowRemoved(name=removal.name, cancelled=removal.cancelled, kept=removal.kept)
