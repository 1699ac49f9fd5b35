"""Console data flow pages: the list and the add form, a flow's settings, edit, enable, disable,
remove. Every change is core's (`dataflows.add`, `update`, `set_enabled`, `remove`); checks are
given in the CLI's words (`json`, `max_size=10MiB`: `core.validators.parse_cli_spec`).

    GET  /console/flows                  list + add form (the default template, `transfer`)
    POST /console/flows                  add
    GET  /console/flows/{name}           detail + edit form
    POST /console/flows/{name}           edit
    POST /console/flows/{name}/enable | disable | remove
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from pydantic import ValidationError
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from api.admin import flow_changes
from api.admin.schemas import FlowCreate, FlowUpdate, problems
from api.web.console.deps import ConsoleError, ConsoleFormDep, ConsoleScope, allowed, back, in_database, page
from core import dataflows, partners
from core.endpoints import rows as endpoint_rows
from core.endpoints.registry import endpoint_class
from core.errors import StatusError, said
from core.models import DataFlow
from core.models import Endpoint as EndpointRow
from core.tenancy import Scope
from core.validators import parse_cli_spec

router = APIRouter(prefix="/console/flows")
LIST = "/console/flows"
CONFLICT_CHOICES = ("", "rename", "overwrite", "fail")
ACTIONS = ("enable", "disable", "remove")


def _url(name: str) -> str:
    return f"{LIST}/{quote(name, safe='')}"


@dataclass(frozen=True)
class Shown:
    name: str
    url: str
    source: str
    dest: str
    pattern: str
    dest_path: str
    checks: str
    checks_editable: bool  # every check can be written in the CLI's words
    retries: int
    retry_delay: float
    on_conflict: str
    enabled: bool
    schedule: str


def _check_text(spec: dict[str, Any]) -> str | None:
    """A stored check in the CLI's words (`max_size=10485760`), or None when it has none (a check
    given in YAML with more than the CLI says): the form then leaves the checks alone."""
    kind = str(spec.get("type"))
    values = {key: value for key, value in spec.items() if key != "type"}
    if kind == "name" and set(values) == {"regex"}:
        text = f"regex={values['regex']}"
    elif len(values) == 1:
        text = f"{kind}={next(iter(values.values()))}"
    else:
        text = kind
    try:
        return text if not values or parse_cli_spec(text) == spec else None
    except ValueError:
        return None


def _shown(session: Session, flow: DataFlow) -> Shown:
    dest = session.get(EndpointRow, flow.dest_endpoint_id)
    checks = [(_check_text(spec), spec) for spec in flow.validators]
    schedule = ""
    if flow.schedule_interval_seconds:
        schedule = f"every {flow.schedule_interval_seconds:g} s"
    elif flow.schedule_cron:
        schedule = f"cron {flow.schedule_cron}"
    return Shown(
        flow.name,
        _url(flow.name),
        dataflows.source_label(session, flow),
        dest.name if dest else "?",
        flow.pattern,
        flow.dest_path,
        "\n".join(text or repr(spec) for text, spec in checks),
        all(text is not None for text, _ in checks),
        flow.retries,
        flow.retry_delay_seconds,
        flow.on_conflict or "",
        flow.enabled,
        schedule,
    )


def _choices(session: Session, scope: Scope) -> tuple[list[str], list[str], list[str]]:
    """(sources, destinations, polling endpoints) a form offers: the account's partners'
    mailboxes and its endpoints."""
    mailboxes = [f"mailbox:{p.name}" for p in partners.list_all(session, scope)]
    endpoints = [
        r.name for r in endpoint_rows.list_all(session, scope) if not endpoint_class(r.type).internal
    ]
    return mailboxes + endpoints, endpoints + mailboxes, endpoints


def _listing(session: Session, scope: Scope) -> dict[str, Any]:
    sources, dests, _ = _choices(session, scope)
    return {
        "flows": [_shown(session, f) for f in dataflows.list_all(session, scope)],
        "sources": sources,
        "dests": dests,
    }


def _number(text: str, what: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(text.strip())
    except ValueError:
        raise dataflows.DataFlowError(f"{what}: not a number: {text[:20]!r}") from None


def _checks(text: str) -> list[dict[str, Any]]:
    try:
        return [parse_cli_spec(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise dataflows.DataFlowError(f"checks: {exc}") from None


def _status(error: Exception) -> int:
    return error.status if isinstance(error, StatusError) else 400


def _said(error: Exception) -> str:
    """A refusal in the words the admin API uses: the input model's by field, or core's."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{field}: {message}" for field, message in problems(error).items())
    return said(error)


@router.get("")
async def list_flows(request: Request, scope: ConsoleScope) -> Response:
    context = await in_database(_listing, scope)
    return page(request, "console/flows.html", scope, problem="", given={}, **context)


@router.post("")
async def add_flow(request: Request, fields: ConsoleFormDep, scope: ConsoleScope) -> Response:
    allowed(scope, "flows.change")
    name = fields.get("name", "").strip()

    def add(session: Session) -> None:
        source, dest = fields.get("source", ""), fields.get("dest", "")
        every = fields.get("every", "").strip()
        new = FlowCreate(
            name=name,
            source=source,
            dest=dest or None,
            pattern=fields.get("pattern", "").strip() or "*",
            dest_path=fields.get("dest_path", "").strip() or "{name}",
            validators=_checks(fields.get("checks", "")),
            retries=_number(fields.get("retries", "") or "5", "retries", int),
            retry_delay_seconds=_number(fields.get("retry_delay", "") or "2", "retry delay", float),
            every=dataflows.parse_interval(every) if every else None,
            cron=fields.get("cron", "").strip() or None,
            after_pull=fields.get("after_pull", "").strip() or "keep",
            source_folder=fields.get("source_folder", "").strip() or None,
            on_conflict=fields.get("on_conflict") or None,
        )
        flow_changes.add_flow(session, scope, new)  # the one way a flow is added (CLI, API, console)

    try:
        await in_database(add)
    except ValueError as error:  # StatusError and the parsers' ValueErrors: said to the user
        context = await in_database(_listing, scope)
        given = {k: v for k, v in fields.items() if k != "csrf"}
        return page(
            request, "console/flows.html", scope, _status(error), problem=_said(error), given=given, **context
        )
    return back(_url(name), "added", name)


def _detail(session: Session, scope: Scope, name: str) -> dict[str, Any]:
    flow = dataflows.require(session, scope, name)
    _, dests, _ = _choices(session, scope)
    return {"flow": _shown(session, flow), "dests": dests}


async def _detail_page(
    request: Request, scope: Scope, name: str, status: int = 200, problem: str = ""
) -> Response:
    try:
        context = await in_database(_detail, scope, name)
    except StatusError as error:
        raise ConsoleError(error.status, said(error)) from None
    return page(
        request, "console/flow.html", scope, status, problem=problem, choices=CONFLICT_CHOICES, **context
    )


@router.get("/{name}")
async def show_flow(request: Request, scope: ConsoleScope, name: str) -> Response:
    return await _detail_page(request, scope, name)


@router.post("/{name}")
async def edit_flow(request: Request, fields: ConsoleFormDep, scope: ConsoleScope, name: str) -> Response:
    allowed(scope, "flows.change")

    def edit(session: Session) -> list[str]:
        editable = _shown(session, dataflows.require(session, scope, name)).checks_editable
        change = FlowUpdate(
            pattern=fields.get("pattern", "").strip() or "*",
            dest=fields.get("dest") or None,
            dest_path=fields.get("dest_path", "").strip() or None,
            validators=_checks(fields.get("checks", "")) if editable else None,
            retries=_number(fields.get("retries", "") or "5", "retries", int),
            retry_delay_seconds=_number(fields.get("retry_delay", "") or "2", "retry delay", float),
            on_conflict=fields.get("on_conflict") or "default",
        )
        return flow_changes.update_flow(session, scope, name, change)

    try:
        changed = await in_database(edit)
    except ValueError as error:
        return await _detail_page(request, scope, name, _status(error), _said(error))
    return back(_url(name), "saved" if changed else "unchanged", name)


@router.post("/{name}/{action}")
async def change_flow(
    request: Request, fields: ConsoleFormDep, scope: ConsoleScope, name: str, action: str
) -> Response:
    if action not in ACTIONS:
        raise ConsoleError(404, f"no data flow action {action!r}")
    allowed(scope, "flows.change")

    def work(session: Session) -> None:
        if action == "remove":
            dataflows.remove(session, scope, name, force=bool(fields.get("force")))
        else:
            dataflows.set_enabled(session, scope, name, action == "enable")

    try:
        await in_database(work)
    except ValueError as error:
        return await _detail_page(request, scope, name, _status(error), _said(error))
    return back(
        LIST if action == "remove" else _url(name), "removed" if action == "remove" else "saved", name
    )
