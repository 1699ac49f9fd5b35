"""How a data flow is added and changed from a request: the one way for `tradelane flow add/set`, the
admin API and the console (the template's params checked, a partner's mailbox as destination
delivering into download/). No web framework here: the CLI imports it."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from api.admin.schemas import FlowCreate, FlowUpdate
from core import dataflows
from core.endpoints import rows as endpoint_rows
from core.models import DataFlow
from core.tenancy import Scope
from tradelane import templates


def add_flow(session: Session, scope: Scope, new: FlowCreate, *, replace: bool = False) -> DataFlow:
    """Create (with `replace`, overwrite) a data flow, for `tradelane flow add`, the admin API and the
    console: the template's params checked, a routing template's endpoints required, a partner's
    mailbox as destination delivering into download/."""
    params = templates.checked_params(new.template, new.params)
    dest = templates.destination(new.template, params, new.dest)
    for routed in templates.routed_destinations(new.template, params) or []:
        endpoint_rows.require(session, scope, routed)  # each endpoint a rule names exists here
    dest_path = new.dest_path
    if dest.startswith(endpoint_rows.MAILBOX_PREFIX):
        endpoint_rows.mailbox_endpoint(session, scope, dest.removeprefix(endpoint_rows.MAILBOX_PREFIX))
        if dest_path == "{name}":
            dest_path = dataflows.default_dest_path(dest)
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
        replace=replace,
        every_seconds=new.every,
        cron=new.cron,
        after_pull=new.after_pull,
        source_folder=new.source_folder,
        on_conflict=new.on_conflict,
        template=new.template,
        params=params,
    )


def update_flow(session: Session, scope: Scope, name: str, change: FlowUpdate) -> list[str]:
    """Change a data flow, for `tradelane flow set`, the admin API and the console: a new template
    takes only the params given, the same template merges them into the flow's (`clear_params`:
    none, the template's defaults apply)."""
    current = dataflows.require(session, scope, name)
    params: dict[str, Any] | None = None
    if change.template is not None and change.template != current.template:
        params = templates.checked_params(change.template, change.params or {})
    elif change.params is not None or change.clear_params:
        merged = {} if change.clear_params else {**current.params, **(change.params or {})}
        params = templates.checked_params(change.template or current.template, merged)
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
