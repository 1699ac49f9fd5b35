"""/api/admin/endpoints and /api/admin/endpoint-types: where data flows deliver and what they poll.

Secrets are write-only: an answer names the secrets an endpoint has, never their values (settings
that hold one show it hidden). A change keeps every secret it does not name.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api import errors
from api.admin.deps import REFUSALS, AdminScope, BoundedRoute, changing, needs
from api.admin.schemas import (
    EndpointChanged,
    EndpointCreate,
    EndpointPublic,
    EndpointRemoved,
    EndpointType,
    EndpointUpdate,
    ProbePublic,
)
from api.deps import SessionDep
from core import concurrency_limits
from core.db import session_scope
from core.endpoints import probe
from core.endpoints import rows as endpoint_rows
from core.endpoints.registry import user_types
from core.endpoints.rows import NoSuchEndpoint
from core.models import Endpoint as EndpointRow
from core.tenancy import Scope

router = APIRouter(tags=["admin: endpoints"], route_class=BoundedRoute)

Changer = Annotated[Scope, needs("endpoints.change")]
Tester = Annotated[Scope, needs("endpoints.test")]


def _known_type(type_: str, refusal: type[errors.ApiError] = errors.NotFound) -> str:
    if type_ not in user_types():
        raise refusal(f"no endpoint type {type_[:40]!r} (known: {', '.join(user_types())})")
    return type_


@router.get("/endpoint-types", responses=REFUSALS)
def list_types(scope: AdminScope) -> list[EndpointType]:
    """The endpoint types an account may add."""
    return [EndpointType(type=t, schema_url=f"/api/admin/endpoint-types/{t}/schema") for t in user_types()]


@router.get("/endpoint-types/{type_name}/schema", responses=REFUSALS)
def type_schema(type_name: str, scope: AdminScope) -> dict[str, Any]:
    """The JSON Schema of a type's settings and secrets (`tradelane endpoint schema TYPE`): what
    `settings` and `secrets` take; secrets are marked `writeOnly`."""
    from core.endpoints.registry import endpoint_class
    from core.endpoints.settings import json_schema

    cls = endpoint_class(_known_type(type_name))
    return json_schema(type_name, cls.settings_model, cls.secrets_model)


def _require(session: SessionDep, scope: Scope, name: str) -> EndpointRow:
    """A live endpoint of the account (reading never makes a partner's mailbox endpoint)."""
    row = endpoint_rows.get(session, scope, name)
    if row is None or row.removed_at is not None:
        raise NoSuchEndpoint(f"no endpoint named {name!r}")
    return row


@router.get("/endpoints", responses=REFUSALS)
def list_endpoints(scope: AdminScope, session: SessionDep) -> list[EndpointPublic]:
    """The account's endpoints: settings (secret values hidden) and the names of their secrets."""
    return [EndpointPublic.of(row) for row in endpoint_rows.list_all(session, scope)]


@router.get("/endpoints/{name}", responses=REFUSALS)
def show_endpoint(name: str, scope: AdminScope, session: SessionDep) -> EndpointPublic:
    """One endpoint: settings (secret values hidden) and the names of its secrets."""
    return EndpointPublic.of(_require(session, scope, name))


@router.post("/endpoints", status_code=201, **changing("endpoints.change"))
def add_endpoint(
    new: EndpointCreate, scope: Changer, session: SessionDep, response: Response
) -> EndpointPublic:
    """A new endpoint, its settings and secrets checked by its type's models (every problem named)
    before anything is stored."""
    _known_type(new.type, errors.BadRequest)
    row = endpoint_rows.add(session, scope, new.name, new.type, new.settings, new.secrets)
    if new.max_concurrent:
        concurrency_limits.set_endpoint(session, scope, row.name, new.max_concurrent)
    response.headers["Location"] = f"/api/admin/endpoints/{row.name}"
    return EndpointPublic.of(row)


@router.patch("/endpoints/{name}", **changing("endpoints.change"))
def change_endpoint(
    name: str, change: EndpointUpdate, scope: Changer, session: SessionDep
) -> EndpointChanged:
    """Change some settings and secrets (a key given replaces that key; `unset` takes keys back to
    their defaults; the rest stay); `changed` names what changed (secrets by name only)."""
    said = endpoint_rows.set_settings(session, scope, name, change.settings, change.secrets, change.unset)
    if "max_concurrent" in change.model_fields_set and concurrency_limits.set_endpoint(
        session, scope, name, change.max_concurrent
    ):
        said.append("max_concurrent")
    row = _require(session, scope, name)
    return EndpointChanged(**EndpointPublic.of(row).model_dump(), changed=said)


@router.delete("/endpoints/{name}", **changing("endpoints.change"))
def remove_endpoint(
    name: str,
    scope: Changer,
    session: SessionDep,
    force: Annotated[bool, Query(description="disable the data flows that use it")] = False,
) -> EndpointRemoved:
    """Remove an endpoint; refused while data flows or connections use it (named), unless `force`."""
    disabled = endpoint_rows.remove(session, scope, name, force=force)
    return EndpointRemoved(name=name, flows_disabled=disabled)


@router.post("/endpoints/{name}/test", **changing("endpoints.test"))
async def test_endpoint(name: str, scope: Tester, request: Request) -> ProbePublic:
    """Connect and list now, with the endpoint's own timeouts: `ok`, or the kind of failure (DNS,
    unreachable, authentication, TLS, host key, permission, not found, configuration) and its
    message, the endpoint's secrets scrubbed. Audited (`endpoint.test`)."""
    remote = request.client.host if request.client else None

    def find() -> EndpointRow:
        with session_scope() as session:
            return probe.probe_named(session, scope, name)

    def record(result: probe.Probe) -> None:
        with session_scope() as session:
            probe.record(session, scope, result, remote_addr=remote)

    # No database session is held while the endpoint is tried: that may take its whole timeout.
    row = await run_in_threadpool(find)
    result = await run_in_threadpool(probe.probe, row)
    await run_in_threadpool(record, result)
    return ProbePublic.of(result)
