"""Data flows: a source paired with a destination, plus validators and a retry policy."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from core import audit, partners
from core.db import home_account_id
from core.endpoints import conflict
from core.endpoints import store as endpoint_store
from core.endpoints.base import ConfigError
from core.models import DataFlow, utcnow
from core.models import Endpoint as EndpointRow
from core.partners import validate_name
from core.polling import PollingError, check_after_pull

PREFECT_FLOW_NAME = "transfer"


class DataFlowError(ValueError):
    """A data flow cannot be created, found or changed as asked."""


def deployment_name(flow: DataFlow) -> str:
    """Each data flow is served as one Prefect deployment of the transfer flow."""
    return flow.name


def deployment_path(flow: DataFlow) -> str:
    return f"{PREFECT_FLOW_NAME}/{deployment_name(flow)}"


def get(session: Session, name: str) -> DataFlow | None:
    return session.exec(
        select(DataFlow).where(DataFlow.account_id == home_account_id(session), DataFlow.name == name)
    ).first()


def require(session: Session, name: str) -> DataFlow:
    flow = get(session, name)
    if flow is None:
        raise DataFlowError(f"no data flow named {name!r}")
    return flow


def parse_source(session: Session, source: str) -> tuple[int | None, int | None, str]:
    """`mailbox:PARTNER[/folder]` → (partner id, None, folder); an endpoint name → (None, id, "")."""
    if source.startswith("mailbox:"):
        partner_name, _, folder = source.removeprefix("mailbox:").partition("/")
        partner = partners.get(session, partner_name)
        if partner is None:
            raise DataFlowError(f"source {source!r}: no partner named {partner_name!r}")
        return partner.id, None, folder or "upload"
    row = endpoint_store.get(session, source)
    if row is None:
        raise DataFlowError(f"source {source!r}: no endpoint of that name (use mailbox:PARTNER for uploads)")
    return None, row.id, ""


def add(
    session: Session,
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
    actor: str = "cli",
    every_seconds: float | None = None,
    cron: str | None = None,
    after_pull: str = "keep",
    source_folder: str | None = None,
    on_conflict: str | None = None,
) -> DataFlow:
    from core.validators import parse_specs

    validate_name(name)
    specs = list(validators or [])
    try:
        parse_specs(specs)
    except ValueError as exc:
        raise DataFlowError(f"data flow {name!r}: {exc}") from exc
    if retries < 0 or retry_delay_seconds < 0:
        raise DataFlowError("retries and retry delay must not be negative")
    partner_id, source_endpoint_id, folder = parse_source(session, source)
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
        dest_row = endpoint_store.require(session, dest)
    except Exception as exc:
        raise DataFlowError(f"destination {dest!r}: {exc}") from exc
    try:
        policy = conflict.setting_for(on_conflict, dest_row.type)
    except ConfigError as exc:
        raise DataFlowError(f"data flow {name!r}: {exc}") from exc
    flow = get(session, name)
    if flow is not None and not replace:
        raise DataFlowError(f"data flow {name!r} already exists")
    if flow is None:
        flow = DataFlow(account_id=home_account_id(session), name=name, dest_endpoint_id=0)
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
    flow.updated_at = utcnow()
    session.add(flow)
    session.flush()
    audit.record(
        session, "flow.add", actor=actor, account_id=flow.account_id, target=name, source=source, dest=dest
    )
    return flow


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


def set_enabled(session: Session, name: str, enabled: bool, actor: str = "cli") -> DataFlow:
    flow = require(session, name)
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


def list_all(session: Session) -> list[DataFlow]:
    return list(
        session.exec(
            select(DataFlow).where(DataFlow.account_id == home_account_id(session)).order_by(DataFlow.name)
        )
    )


def source_label(session: Session, flow: DataFlow) -> str:
    from core.models import Endpoint, Partner

    if flow.source_partner_id is not None:
        partner = session.get(Partner, flow.source_partner_id)
        return f"mailbox:{partner.name if partner else '?'}/{flow.source_folder}"
    endpoint = session.get(Endpoint, flow.source_endpoint_id)
    return endpoint.name if endpoint else "?"
