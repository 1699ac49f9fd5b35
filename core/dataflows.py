"""Data flows: a source paired with a destination, plus validators and a retry policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from core import audit, partners
from core.b2b import landing
from core.endpoints import conflict
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import ConfigError
from core.errors import Conflict, Invalid, NotFound, said
from core.mailbox import layout
from core.models import DataFlow, utcnow
from core.models import Endpoint as EndpointRow
from core.partners import validate_name
from core.polling import PollingError, check_after_pull
from core.tenancy import Scope


class DataFlowError(Invalid):
    """A data flow cannot be created, found or changed as asked (400, or its subclass's status)."""


class NoSuchDataFlow(DataFlowError, NotFound):
    """No data flow, or no source or destination, of that name in the scope's account (404)."""

    status = NotFound.status


class DataFlowConflict(DataFlowError, Conflict):
    """The name is taken, or the flow's state forbids the change (409)."""

    status = Conflict.status


def _about(what: str, exc: Exception) -> DataFlowError:
    """`exc` said about `what`, keeping its status (a missing destination stays a 404)."""
    if isinstance(exc, NotFound):
        return NoSuchDataFlow(f"{what}: {said(exc)}")
    if isinstance(exc, Conflict):
        return DataFlowConflict(f"{what}: {said(exc)}")
    return DataFlowError(f"{what}: {said(exc)}")


def get(session: Session, scope: Scope, name: str) -> DataFlow | None:
    return session.exec(
        select(DataFlow).where(
            DataFlow.account_id == scope.account_id,
            DataFlow.name == name,
            col(DataFlow.removed_at).is_(None),
        )
    ).first()


def require(session: Session, scope: Scope, name: str) -> DataFlow:
    flow = get(session, scope, name)
    if flow is None:
        raise NoSuchDataFlow(f"no data flow named {name!r}")
    return flow


def parse_source(session: Session, scope: Scope, source: str) -> tuple[int | None, int | None, str]:
    """`mailbox:PARTNER[/folder]` → (partner id, None, folder); an endpoint name → (None, id, "")."""
    if source.startswith("mailbox:"):
        partner_name, _, folder = source.removeprefix("mailbox:").partition("/")
        partner = partners.get(session, scope, partner_name)
        if partner is None or partner.removed_at is not None:
            raise NoSuchDataFlow(f"source {source!r}: no partner named {partner_name!r}")
        return partner.id, None, folder or layout.SOURCE_FOLDER
    row = endpoint_rows.get(session, scope, source)
    if row is None:
        raise NoSuchDataFlow(f"source {source!r}: no endpoint of that name (use mailbox:PARTNER for uploads)")
    return None, row.id, ""


def add(
    session: Session,
    scope: Scope,
    name: str,
    *,
    source: str,
    dest: str,
    pattern: str = "*",
    dest_path: str = "{name}",
    validators: list[dict[str, Any]] | None = None,
    retries: int = 5,
    retry_delay_seconds: float = 2.0,
    enabled: bool = True,
    replace: bool = False,
    every_seconds: float | None = None,
    cron: str | None = None,
    after_pull: str = "keep",
    source_folder: str | None = None,
    on_conflict: str | None = None,
    template: str = "transfer",
    params: dict[str, Any] | None = None,
) -> DataFlow:
    """Create (or with `replace`, overwrite) a data flow. `template` and `params` come checked
    against the template's params model (tradelane.templates.checked_params): core knows no template."""
    scope.require_to("flows.change")
    from core.validators import parse_specs

    validate_name(name)
    specs = list(validators or [])
    try:
        parse_specs(specs)
    except ValueError as exc:
        raise _about(f"data flow {name!r}", exc) from exc
    if retries < 0 or retry_delay_seconds < 0:
        raise DataFlowError("retries and retry delay must not be negative")
    actor = scope.actor
    partner_id, source_endpoint_id, folder = parse_source(session, scope, source)
    if source_folder is not None:
        folder = source_folder.strip("/")
    schedule = check_schedule(source_endpoint_id is not None, every_seconds, cron)
    try:
        after_pull = check_after_pull(after_pull)
    except PollingError as exc:
        raise DataFlowError(str(exc)) from exc
    source_row = session.get(EndpointRow, source_endpoint_id) if source_endpoint_id else None
    if source_row is not None and source_row.type == "email" and after_pull.startswith("archive:"):
        # A mailbox is not a folder: "archive" would write (send) a message. "delete" takes the
        # attachment the email endpoint's way (its after_pull: seen, move:<folder> or delete).
        raise DataFlowError(
            f"--after-pull {after_pull!r} does not apply to an email source; use 'delete' (the email "
            "endpoint's after_pull then marks, moves or deletes the message) or 'keep'"
        )
    try:
        dest_row = endpoint_rows.require(session, scope, dest)
    except Exception as exc:
        raise _about(f"destination {dest!r}", exc) from exc
    try:
        policy = conflict.setting_for(on_conflict, dest_row.type)
    except ConfigError as exc:
        raise _about(f"data flow {name!r}", exc) from exc
    flow = get(session, scope, name)
    if flow is not None and not replace:
        raise DataFlowConflict(f"data flow {name!r} already exists")
    if flow is None:
        flow = DataFlow(account_id=scope.account_id, name=name, dest_endpoint_id=0)
    assert dest_row.id is not None
    flow.source_partner_id = partner_id
    flow.source_endpoint_id = source_endpoint_id
    flow.source_folder = folder
    flow.pattern = pattern
    flow.dest_endpoint_id = dest_row.id
    flow.dest_path = dest_path
    flow.validators = specs
    flow.retries = retries
    flow.retry_delay_seconds = retry_delay_seconds
    flow.enabled = enabled
    flow.schedule_interval_seconds, flow.schedule_cron = schedule
    flow.after_pull = after_pull
    flow.on_conflict = None if policy is None else policy.value
    flow.template = template
    flow.params = dict(params or {})
    flow.updated_at = utcnow()
    session.add(flow)
    session.flush()
    audit.record(
        session, "flow.add", actor=actor, account_id=flow.account_id, target=name, source=source, dest=dest
    )
    return flow


def default_dest_path(dest: str) -> str:
    """The destination path a data flow gets when none is given: a partner's mailbox delivers into
    its download/ folder, any other endpoint at its root."""
    return layout.DELIVERY_PATH if dest.startswith(endpoint_rows.MAILBOX_PREFIX) else "{name}"


def check_schedule(
    polls: bool, every_seconds: float | None, cron: str | None
) -> tuple[float | None, str | None]:
    """A polling source needs exactly one of --every / --cron; a mailbox source takes neither."""
    if not polls:
        if every_seconds or cron:
            raise DataFlowError("--every/--cron are for polling sources; uploads start their flows at once")
        return None, None
    if (every_seconds is None) == (cron is None):
        raise DataFlowError("a polling source needs one schedule: --every 60s or --cron '*/5 * * * *'")
    if every_seconds is not None and every_seconds < 1:
        raise DataFlowError("--every must be at least 1 second")
    if cron is not None and len(cron.split()) not in (5, 6):
        raise DataFlowError(f"--cron {cron!r}: a cron expression has 5 fields, e.g. '*/5 * * * *'")
    return every_seconds, cron


def parse_interval(text: str) -> float:
    """'90', '90s', '5m', '2h', '1d' → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise DataFlowError(f"--every {text!r}: use seconds or a number with s, m, h or d") from None


def on_conflict_label(session: Session, flow: DataFlow) -> str:
    """The data flow's on_conflict for people: `rename`, or `rename (default)`; `-` where none applies."""
    dest = session.get(EndpointRow, flow.dest_endpoint_id)
    if flow.on_conflict is not None:
        return flow.on_conflict
    default = conflict.default_for(dest.type) if dest else None
    return f"{default} (default)" if default else "-"


def polls(flow: DataFlow) -> bool:
    """Whether the flow pulls from an endpoint on a schedule (else uploads start it)."""
    return flow.source_endpoint_id is not None


def set_enabled(session: Session, scope: Scope, name: str, enabled: bool) -> DataFlow:
    scope.require_to("flows.change")
    actor = scope.actor
    flow = require(session, scope, name)
    landing.refuse_change(session, flow)
    if enabled:
        check_can_run(session, flow)
    flow.enabled = enabled
    flow.updated_at = utcnow()
    session.add(flow)
    audit.record(
        session,
        "flow.enable" if enabled else "flow.disable",
        actor=actor,
        account_id=flow.account_id,
        target=name,
    )
    return flow


def list_all(session: Session, scope: Scope) -> list[DataFlow]:
    return list(
        session.exec(
            select(DataFlow)
            .where(DataFlow.account_id == scope.account_id, col(DataFlow.removed_at).is_(None))
            .order_by(DataFlow.name)
        )
    )


def list_served_all_accounts(session: Session) -> list[tuple[DataFlow, str]]:
    """Every account's live data flows with their account's name: what the runner serves."""
    from core.models import Account

    rows = session.exec(
        select(DataFlow, Account.name)
        .join(Account, col(Account.id) == DataFlow.account_id)
        .where(col(DataFlow.removed_at).is_(None))
        .order_by(Account.name, DataFlow.name)
    ).all()
    return [(flow, account) for flow, account in rows]


def check_can_run(session: Session, flow: DataFlow) -> None:
    """A flow whose destination or polling source was removed cannot be enabled: say what to change."""
    dest = session.get(EndpointRow, flow.dest_endpoint_id)
    if dest is None or dest.removed_at is not None:
        label = dest.name if dest is not None else "?"
        raise DataFlowConflict(
            f"data flow {flow.name!r} delivers to {label!r}, which was removed: "
            f"point it elsewhere first (tradelane flow set {flow.name} --dest OTHER)"
        )
    if flow.source_endpoint_id is not None:
        source = session.get(EndpointRow, flow.source_endpoint_id)
        if source is None or source.removed_at is not None:
            raise DataFlowConflict(
                f"data flow {flow.name!r} polls an endpoint that was removed; remove the flow"
            )


_KEEP: Any = object()


def update(
    session: Session,
    scope: Scope,
    name: str,
    *,
    pattern: str | None = None,
    dest: str | None = None,
    dest_path: str | None = None,
    validators: list[dict[str, Any]] | None = None,
    retries: int | None = None,
    retry_delay_seconds: float | None = None,
    enabled: bool | None = None,
    on_conflict: str | None = None,
    template: str | None = None,
    params: dict[str, Any] | None = None,
) -> list[str]:
    """Change some settings of a data flow (the rest stay); what changed, in words.

    `on_conflict` "default" goes back to the destination type's own policy. `template` and
    `params` (the whole new params) come checked, as for `add`.

    New settings apply to files that arrive from now on and to pending transfers not yet started.
    """
    scope.require_to("flows.change")
    from core.validators import parse_specs

    actor = scope.actor
    flow = require(session, scope, name)
    landing.refuse_change(session, flow)
    said: list[str] = []
    if pattern is not None and pattern != flow.pattern:
        if not pattern:
            raise DataFlowError("--pattern must not be empty (use '*' for every file)")
        flow.pattern = pattern
        said.append(f"pattern {pattern}")
    if dest is not None:
        if dest.startswith("mailbox:"):
            endpoint_rows.mailbox_endpoint(session, scope, dest.removeprefix("mailbox:"))
        try:
            dest_row = endpoint_rows.require(session, scope, dest)
        except Exception as exc:
            raise _about(f"destination {dest!r}", exc) from exc
        if dest_row.id != flow.dest_endpoint_id:
            old = session.get(EndpointRow, flow.dest_endpoint_id)
            assert dest_row.id is not None
            flow.dest_endpoint_id = dest_row.id
            said.append(f"destination {dest}")
            # The default path follows the destination's kind: a mailbox delivers into download/.
            if dest_path is None:
                was_mailbox = old is not None and old.type == "mailbox"
                if dest_row.type == "mailbox" and flow.dest_path == "{name}":
                    dest_path = layout.DELIVERY_PATH
                elif was_mailbox and dest_row.type != "mailbox" and flow.dest_path == layout.DELIVERY_PATH:
                    dest_path = "{name}"
    if dest_path is not None and dest_path != flow.dest_path:
        flow.dest_path = dest_path
        said.append(f"path {dest_path}")
    current_dest = session.get(EndpointRow, flow.dest_endpoint_id)
    dest_type = current_dest.type if current_dest is not None else None
    if on_conflict is not None and dest_type is None:
        raise DataFlowError(f"data flow {name!r} has no destination; give --dest with --on-conflict")
    if on_conflict is not None and dest_type is not None:
        try:
            policy = None if on_conflict == "default" else conflict.setting_for(on_conflict, dest_type)
        except ValueError as exc:
            raise _about(f"data flow {name!r}", exc) from exc
        value = None if policy is None else policy.value
        if value != flow.on_conflict:
            flow.on_conflict = value
            said.append(f"on_conflict {value or 'default'}")
    elif flow.on_conflict is not None and dest_type is not None and conflict.default_for(dest_type) is None:
        flow.on_conflict = None  # a new destination of a kind where every delivery is a new message
        said.append(f"on_conflict default (it does not apply to {dest_type} destinations)")
    if validators is not None and validators != flow.validators:
        try:
            parse_specs(validators)
        except ValueError as exc:
            raise _about(f"data flow {name!r}", exc) from exc
        flow.validators = list(validators)
        said.append("checks " + (", ".join(str(v.get("type")) for v in validators) or "none"))
    if retries is not None and retries != flow.retries:
        if retries < 0:
            raise DataFlowError("--retries must not be negative")
        flow.retries = retries
        said.append(f"retries {retries}")
    if retry_delay_seconds is not None and retry_delay_seconds != flow.retry_delay_seconds:
        if retry_delay_seconds < 0:
            raise DataFlowError("--retry-delay must not be negative")
        flow.retry_delay_seconds = retry_delay_seconds
        said.append(f"retry delay {retry_delay_seconds:g}s")
    if enabled is not None and enabled != flow.enabled:
        flow.enabled = enabled
        said.append("enabled" if enabled else "disabled")
    if template is not None and template != flow.template:
        flow.template = template
        said.append(f"template {template}")
    if params is not None and params != flow.params:
        flow.params = dict(params)
        said.append("params " + (", ".join(f"{k}={v!r}" for k, v in params.items()) or "none"))
    if flow.enabled:
        check_can_run(session, flow)
    if said:
        flow.updated_at = utcnow()
        session.add(flow)
        audit.record(session, "flow.set", actor=actor, account_id=flow.account_id, target=name, changes=said)
    return said


@dataclass
class FlowRemoval:
    name: str
    cancelled: int = 0  # pending or running transfers marked failed (--force)
    kept: bool = False  # the row stays (renamed) because transfers or pulled files refer to it


def remove(session: Session, scope: Scope, name: str, *, force: bool = False) -> FlowRemoval:
    """Remove a data flow. Refused while its transfers are pending or running, unless `force`:
    they are then marked failed ("data flow removed"). Its history stays: a flow with transfers is
    kept, disabled and renamed `<name>.removed.<id>`, so `transfers` still shows where files went.
    """
    scope.require_to("flows.change")
    from core.models import OPEN_STATES, PulledFile, Transfer, TransferState

    actor = scope.actor
    flow = require(session, scope, name)
    landing.refuse_change(session, flow)
    waiting = list(
        session.exec(
            select(Transfer).where(
                Transfer.data_flow_id == flow.id,
                col(Transfer.state).in_(OPEN_STATES),
            )
        )
    )
    if waiting and not force:
        raise DataFlowConflict(
            f"data flow {name!r} has {len(waiting)} transfer(s) pending or running: wait for them "
            f"(tradelane transfers --flow {name}), or pass --force to stop them (they are marked failed)"
        )
    removal = FlowRemoval(name=name, cancelled=len(waiting))
    now = utcnow()
    for transfer in waiting:
        transfer.state = TransferState.failed
        transfer.error = "the data flow was removed before this file was delivered"
        transfer.next_attempt_at = None  # a waiting one is not tried again
        transfer.finished_at = transfer.updated_at = now
        session.add(transfer)
    has_history = session.exec(select(Transfer.id).where(Transfer.data_flow_id == flow.id).limit(1)).first()
    has_pulls = session.exec(select(PulledFile.id).where(PulledFile.data_flow_id == flow.id).limit(1)).first()
    if has_history is not None or has_pulls is not None:
        removal.kept = True
        flow.name = f"{name}.removed.{flow.id}"
        flow.enabled = False
        flow.removed_at = flow.updated_at = now
        session.add(flow)
    else:
        session.delete(flow)
    audit.record(
        session,
        "flow.remove",
        actor=actor,
        account_id=flow.account_id,
        target=name,
        cancelled=removal.cancelled,
    )
    return removal


def source_label(session: Session, flow: DataFlow) -> str:
    from core.models import Connection, Endpoint, Partner

    if flow.source_connection_id is not None:
        conn = session.get(Connection, flow.source_connection_id)
        return f"connection {conn.receiver_name if conn else '?'}"
    if flow.source_partner_id is not None:
        partner = session.get(Partner, flow.source_partner_id)
        return f"mailbox:{partner.name if partner else '?'}/{flow.source_folder}"
    endpoint = session.get(Endpoint, flow.source_endpoint_id)
    return endpoint.name if endpoint else "?"
