"""Console endpoint pages: list, add and edit with the generated form (api/web/forms.py), Test,
remove. Every change goes through core (`endpoint_rows.add`, `set_settings`, `remove`,
`probe`), so the role checks, checks and messages are the CLI's and the admin API's.

    GET  /console/endpoints                 the list, and the type chooser
    GET  /console/endpoints/new?type=T      the form of type T
    POST /console/endpoints                 add (the form again, 400/409, with each problem)
    GET  /console/endpoints/{name}          its settings (no secret), the edit form, Test, Remove
    POST /console/endpoints/{name}          save the edit form
    POST /console/endpoints/{name}/test     connect and list now; the result in a status box
    POST /console/endpoints/try             "Test these settings" on the add or edit form: parsed as a
                                            save would (an edit's blank secrets are the stored ones),
                                            probed, nothing stored; the form again with the result
    POST /console/endpoints/{name}/remove   remove (`force`: disable the data flows using it)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.web import forms
from api.web.console.deps import (
    ConsoleError,
    ConsoleFormDep,
    ConsoleScope,
    EndpointFormDep,
    allowed,
    back,
    csrf_value,
    in_database,
    page,
)
from core import concurrency_limits, dataflows
from core.crypto import encrypt_json
from core.endpoints import probe as probes
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import ConfigError, EndpointError
from core.endpoints.registry import endpoint_class, user_types
from core.errors import Conflict, StatusError, said
from core.models import Endpoint as EndpointRow
from core.object_names import InvalidName
from core.roles import may
from core.tenancy import Scope

router = APIRouter(prefix="/console/endpoints")
LIST = "/console/endpoints"
TRY = "/console/endpoints/try"


def _url(name: str) -> str:
    return f"{LIST}/{quote(name, safe='')}"


@dataclass(frozen=True)
class Listed:
    name: str
    type: str
    uri: str
    url: str
    used_by: list[str]  # the data flows that deliver to it or poll it


def _uri(row: EndpointRow) -> str:
    """Where the endpoint points, secrets hidden ("-" when its settings no longer build one)."""
    scrubber = endpoint_rows.row_scrubber(row)
    try:
        with endpoint_rows.open_row(row) as endpoint:
            return scrubber.text(endpoint.uri(""))
    except Exception:  # a stored row that no longer opens is still listed
        return "-"


def _listed(session: Session, scope: Scope) -> list[Listed]:
    rows = [r for r in endpoint_rows.list_all(session, scope) if not endpoint_class(r.type).internal]
    users: dict[int | None, list[str]] = {}
    for flow in dataflows.list_all(session, scope):
        for endpoint_id in {flow.dest_endpoint_id, flow.source_endpoint_id} - {None}:
            users.setdefault(endpoint_id, []).append(flow.name)
    return [Listed(r.name, r.type, _uri(r), _url(r.name), users.get(r.id, [])) for r in rows]


@router.get("")
async def list_endpoints(request: Request, scope: ConsoleScope) -> Response:
    listed = await in_database(_listed, scope)
    return page(request, "console/endpoints.html", scope, endpoints=listed, types=user_types())


def _type(type_: str) -> str:
    if type_ not in user_types():
        raise ConsoleError(404, f"no endpoint type {type_!r}; known: {', '.join(user_types())}")
    return type_


@router.get("/new")
async def new_endpoint(request: Request, scope: ConsoleScope, type: str = "") -> Response:
    allowed(scope, "endpoints.change")
    form = forms.build(_type(type))
    return _form_page(request, scope, form, action=LIST)


def _form_page(
    request: Request,
    scope: Scope,
    form: forms.EndpointForm,
    *,
    action: str,
    status: int = 200,
    **context: Any,
) -> Response:
    try_action = TRY if may(scope, "endpoints.test") else ""
    csrf_html = forms.render(form, csrf=csrf_value(request), action=action, try_action=try_action)
    return page(
        request, "console/endpoint_form.html", scope, status, form=form, form_html=csrf_html, **context
    )


def _status(error: Exception) -> int:
    return error.status if isinstance(error, StatusError) else 400


def _config_error(error: Exception) -> ConfigError:
    """The error as the form shows it (a StatusError's words at the top)."""
    return error if isinstance(error, ConfigError) else ConfigError(said(error))


@router.post("")
async def add_endpoint(request: Request, fields: EndpointFormDep, scope: ConsoleScope) -> Response:
    allowed(scope, "endpoints.change")
    type_ = _type(fields.get("type", ""))
    try:
        submitted = forms.parse_form(type_, fields)
        await in_database(
            lambda session: endpoint_rows.add(
                session, scope, submitted.name, type_, submitted.settings, submitted.secrets
            )
        )
    except (ConfigError, StatusError, InvalidName) as error:
        if isinstance(error, Conflict | InvalidName):  # the name is taken, or is no name
            form = forms.build(type_, fields, posted=True)
            form.name_errors.append(said(error))
        else:
            form = forms.build(type_, fields, error=_config_error(error), posted=True)
        return _form_page(request, scope, form, action=LIST, status=_status(error))
    return back(_url(submitted.name), "added", submitted.name)


@dataclass(frozen=True)
class Stored:
    row: EndpointRow
    shown: dict[str, Any]
    secret_names: list[str]
    secrets: dict[str, Any]


def _stored(session: Session, scope: Scope, name: str) -> Stored:
    row = endpoint_rows.get(session, scope, name)
    if row is None or row.removed_at is not None or endpoint_class(row.type).internal:
        raise ConsoleError(404, f"no endpoint named {name!r}")
    _, secrets = forms.stored_models(row)
    return Stored(row, endpoint_rows.shown_settings(row), endpoint_rows.row_secret_names(row), secrets)


def _edit_form(
    stored: Stored,
    fields: dict[str, str] | None = None,
    error: Exception | None = None,
    *,
    posted: bool = False,
) -> forms.EndpointForm:
    row = stored.row
    if fields is None:
        fields = {"name": row.name, **forms.fields_of(row.type, stored.shown)}
    return forms.build(
        row.type,
        {**fields, "name": row.name},
        editing=True,
        secret_names=stored.secret_names,
        stored_secrets=stored.secrets,
        error=None if error is None else _config_error(error),
        posted=posted or error is not None,
    )


def _endpoint_page(
    request: Request,
    scope: Scope,
    stored: Stored,
    form: forms.EndpointForm,
    *,
    status: int = 200,
    probe: probes.Probe | None = None,
    problem: str = "",
) -> Response:
    return _form_page(
        request,
        scope,
        form,
        action=_url(stored.row.name),
        status=status,
        endpoint=stored.row,
        shown=stored.shown,
        secret_names=stored.secret_names,
        url=_url(stored.row.name),
        probe=probe,
        problem=problem,
    )


@router.post("/try")
async def try_settings(request: Request, fields: EndpointFormDep, scope: ConsoleScope) -> Response:
    allowed(scope, "endpoints.test")
    editing = bool(fields.get("editing"))
    name = fields.get("name", "").strip()

    def prepare(session: Session) -> tuple[EndpointRow, Stored | None]:
        stored = _stored(session, scope, name) if editing else None
        type_ = stored.row.type if stored is not None else _type(fields.get("type", ""))
        submitted = forms.parse_form(type_, fields)
        secrets = dict(submitted.secrets)
        if stored is not None:  # blank secrets are the stored ones, as a save would keep them
            kept = {k: v for k, v in stored.secrets.items() if k not in submitted.clear}
            secrets = {**kept, **secrets}
        config, secret_values = endpoint_rows.prepare(type_, submitted.settings, secrets, scope)
        # Probed as a stored row would be (the one probe), but never added to the session.
        row = EndpointRow(
            account_id=scope.account_id,
            name=name or "(not saved)",
            type=type_,
            config=config,
            secrets=encrypt_json(secret_values) if secret_values else None,
        )
        return row, stored

    try:
        row, stored = await in_database(prepare)
    except ConfigError as error:
        if editing:
            stored = await in_database(_stored, scope, name)
            return _endpoint_page(request, scope, stored, _edit_form(stored, fields, error), status=400)
        form = forms.build(_type(fields.get("type", "")), fields, error=error, posted=True)
        return _form_page(request, scope, form, action=LIST, status=400)
    found = await run_in_threadpool(probes.probe, row)
    await in_database(probes.record, scope, found)
    if stored is not None:
        return _endpoint_page(request, scope, stored, _edit_form(stored, fields, posted=True), probe=found)
    form = forms.build(row.type, fields, posted=True)
    return _form_page(request, scope, form, action=LIST, probe=found)


@router.get("/{name}")
async def show_endpoint(request: Request, scope: ConsoleScope, name: str) -> Response:
    stored = await in_database(_stored, scope, name)
    return _endpoint_page(request, scope, stored, _edit_form(stored))


@router.post("/{name}")
async def edit_endpoint(
    request: Request, fields: EndpointFormDep, scope: ConsoleScope, name: str
) -> Response:
    allowed(scope, "endpoints.change")

    def save(session: Session) -> list[str]:
        row = endpoint_rows.get(session, scope, name)
        if row is None:
            raise ConsoleError(404, f"no endpoint named {name!r}")
        submitted = forms.parse_form(row.type, fields)
        changes, secret_changes, unset = forms.edit_changes(row, submitted)
        return endpoint_rows.set_settings(session, scope, name, changes, secret_changes, unset)

    try:
        changed = await in_database(save)
    except (ConfigError, StatusError) as error:
        stored = await in_database(_stored, scope, name)
        return _endpoint_page(
            request, scope, stored, _edit_form(stored, fields, error), status=_status(error)
        )
    return back(_url(name), "saved" if changed else "unchanged", name)


@router.post("/{name}/concurrency")
async def set_concurrency(
    request: Request, fields: ConsoleFormDep, scope: ConsoleScope, name: str
) -> Response:
    """Files carried to or from the endpoint at once on every worker (blank or 0: unlimited)."""
    allowed(scope, "endpoints.change")
    limit = fields.get("max_concurrent", "")
    try:
        changed = await in_database(
            lambda session: concurrency_limits.set_endpoint(session, scope, name, limit)
        )
    except StatusError as error:
        stored = await in_database(_stored, scope, name)
        form = _edit_form(stored)
        return _endpoint_page(request, scope, stored, form, status=_status(error), problem=said(error))
    return back(_url(name), "saved" if changed else "unchanged", name)


@router.post("/{name}/test")
async def test_endpoint(request: Request, _form: ConsoleFormDep, scope: ConsoleScope, name: str) -> Response:
    allowed(scope, "endpoints.test")
    row = await in_database(probes.probe_named, scope, name)
    # The endpoint's own timeouts bound it; off the event loop, outside any transaction.
    found = await run_in_threadpool(probes.probe, row)
    await in_database(probes.record, scope, found)
    stored = await in_database(_stored, scope, name)
    return _endpoint_page(request, scope, stored, _edit_form(stored), probe=found)


@router.post("/{name}/remove")
async def remove_endpoint(
    request: Request, fields: ConsoleFormDep, scope: ConsoleScope, name: str
) -> Response:
    allowed(scope, "endpoints.change")
    force = bool(fields.get("force"))
    try:
        await in_database(lambda session: endpoint_rows.remove(session, scope, name, force=force))
    except (EndpointError, StatusError) as error:
        stored = await in_database(_stored, scope, name)
        return _endpoint_page(
            request, scope, stored, _edit_form(stored), status=_status(error), problem=said(error)
        )
    return back(LIST, "removed", name)
