"""/api/admin/flows: data flows (source → checks → destination), as `tradelane flow ...` manages them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from api.admin.deps import REFUSALS, AdminScope, changing, core_refusals, needs
from api.admin.schemas import FlowChanged, FlowCreate, FlowPublic, FlowRemoved, FlowUpdate
from api.deps import SessionDep
from core import dataflows
from core.endpoints import rows as endpoint_rows
from core.mailbox import layout
from core.models import DataFlow
from core.tenancy import Scope
from tradelane import templates

router = APIRouter(prefix="/flows", tags=["admin: flows"])

Changer = Annotated[Scope, needs("flows.change")]


def add_flow(session: Session, scope: Scope, new: FlowCreate) -> DataFlow:
    """Create a data flow as `tradelane flow add` does: the template's params checked, a routing
    template's endpoints required, a partner's mailbox as destination delivering into download/."""
    params = templates.checked_params(new.template, new.params)
    dest = templates.destination(new.template, params, new.dest)
    for routed in templates.routed_destinations(new.template, params) or []:
        endpoint_rows.require(session, scope, routed)  # each endpoint a rule names exists here
    dest_path = new.dest_path
    if dest.startswith(endpoint_rows.MAILBOX_PREFIX):
        endpoint_rows.mailbox_endpoint(session, scope, dest.removeprefix(endpoint_rows.MAILBOX_PREFIX))
        if dest_path == "{name}":
            dest_path = layout.DELIVERY_PATH
    return dataflows.add(
        session,
        scope,
        new.name,
        source=new.source,
        dest=dest,
        pattern=new.pattern,
        dest_path=dest_path,
        validators=new.validators,
        retries=new.retries,
        retry_delay_seconds=new.retry_delay_seconds,
        enabled=new.enabled,
        every_seconds=new.every,
        cron=new.cron,
        after_pull=new.after_pull,
        source_folder=new.source_folder,
        on_conflict=new.on_conflict,
        template=new.template,
        params=params,
    )


def update_flow(session: Session, scope: Scope, name: str, change: FlowUpdate) -> list[str]:
    """Change a data flow as `tradelane flow set` does: a new template takes only the params given,
    the same template merges them into the flow's."""
    current = dataflows.require(session, scope, name)
    params: dict[str, Any] | None = None
    if change.template is not None and change.template != current.template:
        params = templates.checked_params(change.template, change.params or {})
    elif change.params is not None:
        params = templates.checked_params(current.template, {**current.params, **change.params})
    return dataflows.update(
        session,
        scope,
        name,
        pattern=change.pattern,
        dest=change.dest,
        dest_path=change.dest_path,
        validators=change.validators,
        retries=change.retries,
        retry_delay_seconds=change.retry_delay_seconds,
        enabled=change.enabled,
        on_conflict=change.on_conflict,
        template=change.template,
        params=params,
    )


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
    with core_refusals():
        flow = add_flow(session, scope, new)
    response.headers["Location"] = f"/api/admin/flows/{flow.name}"
    return FlowPublic.of(session, flow)


@router.patch("/{name}", **changing("flows.change"))
def change(name: str, change: FlowUpdate, scope: Changer, session: SessionDep) -> FlowChanged:
    """Change some settings (the fields given); they apply to files that arrive from now on and to
    pending transfers not yet started. `changed` says what changed, in words."""
    with core_refusals():
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
