"""Endpoints as database rows: create them (secrets encrypted), find them, open them, remove them."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from core import audit, redact
from core.crypto import SecretKeyError, decrypt_json, encrypt_json
from core.db import HOME_ACCOUNT, home_account_id
from core.endpoints.base import ConfigError, Endpoint, EndpointError
from core.endpoints.http_settings import url_secrets
from core.endpoints.registry import endpoint_class, open_endpoint
from core.models import Endpoint as EndpointRow
from core.models import Partner, utcnow
from core.object_names import validate_name

MAILBOX_PREFIX = "mailbox:"


def get(session: Session, name: str) -> EndpointRow | None:
    return session.exec(
        select(EndpointRow).where(
            EndpointRow.account_id == home_account_id(session), EndpointRow.name == name
        )
    ).first()


def require(session: Session, name: str) -> EndpointRow:
    row = get(session, name)
    if row is None:
        if name.startswith(MAILBOX_PREFIX):
            return mailbox_endpoint(session, name.removeprefix(MAILBOX_PREFIX))
        raise ConfigError(f"no endpoint named {name!r}")
    return row


def add(
    session: Session,
    name: str,
    type_: str,
    config: dict[str, Any],
    secrets: dict[str, Any] | None = None,
    *,
    actor: str = "cli",
    replace: bool = False,
) -> EndpointRow:
    if not name.startswith(MAILBOX_PREFIX):
        validate_name(name)
    clean_config, clean_secrets = prepare(type_, config, secrets)
    # Building one checks every setting (constructors do no I/O): a bad value is refused here,
    # not found by the first run. Unknown types fail here too.
    endpoint = endpoint_class(type_)(clean_config, clean_secrets)
    endpoint.close()
    row = get(session, name)
    if row is not None and not replace:
        raise ConfigError(f"endpoint {name!r} already exists")
    if row is None:
        row = EndpointRow(account_id=home_account_id(session), name=name, type=type_)
    row.type = type_
    row.config = clean_config
    row.secrets = encrypt_json(clean_secrets) if clean_secrets else None
    session.add(row)
    session.flush()
    # Secrets never go into the audit trail: only which keys were set (and, should a secret
    # value also sit in a plain setting, it is hidden there too).
    audit.record(
        session,
        "endpoint.add",
        actor=actor,
        account_id=row.account_id,
        target=name,
        type=type_,
        config=endpoint.scrubber.data(clean_config),
        secrets=secret_names(clean_secrets),
    )
    return row


def prepare(
    type_: str, config: dict[str, Any], secrets: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (config, secrets) an endpoint is stored with: unset values dropped and every
    secret-bearing setting moved into the secrets (each type says which, `split_settings`)."""
    clean_config = {k: v for k, v in config.items() if v is not None}
    clean_secrets = {k: v for k, v in (secrets or {}).items() if v is not None}
    return endpoint_class(type_).split_settings(clean_config, clean_secrets)


def secret_names(secrets: dict[str, Any]) -> list[str]:
    """Which secrets are set, never their values: `bearer`, `headers.X-Api-Key`, `urls.url`."""
    names: list[str] = []
    for key, value in secrets.items():
        if isinstance(value, dict) and value:
            names += [f"{key}.{inner}" for inner in value]
        else:
            names.append(key)
    return sorted(names)


def mailbox_endpoint(session: Session, partner_name: str) -> EndpointRow:
    """The implicit `mailbox:PARTNER` endpoint (a partner's mailbox as a destination)."""
    # Queried here rather than with core.partners, which imports this module (it detaches a
    # removed partner's mailbox endpoint).
    partner = session.exec(
        select(Partner.id).where(
            Partner.account_id == home_account_id(session),
            Partner.name == partner_name,
            col(Partner.removed_at).is_(None),
        )
    ).first()
    if partner is None:
        raise ConfigError(f"no partner named {partner_name!r}")
    name = f"{MAILBOX_PREFIX}{partner_name}"
    row = get(session, name)
    if row is None:
        row = add(session, name, "mailbox", {"partner": partner_name, "account": HOME_ACCOUNT})
    return row


def list_all(session: Session) -> list[EndpointRow]:
    return list(
        session.exec(
            select(EndpointRow)
            .where(EndpointRow.account_id == home_account_id(session), col(EndpointRow.removed_at).is_(None))
            .order_by(EndpointRow.name)
        )
    )


class EndpointInUse(ConfigError):
    """Data flows still take from or deliver to the endpoint; the message names them."""


def remove(session: Session, name: str, *, force: bool = False, actor: str = "cli") -> list[str]:
    """Remove an endpoint; refused while data flows use it, naming them, unless `force`.

    With `force` those flows are disabled (their names are returned) and the endpoint is kept,
    renamed `<name>.removed.<id>`, for their history; a flow cannot be enabled again until it is
    pointed at another endpoint. An endpoint nothing refers to is deleted.
    """
    from core.models import DataFlow

    row = get(session, name)
    if row is None or row.removed_at is not None:
        raise ConfigError(f"no endpoint named {name!r}")
    referring = session.exec(
        select(DataFlow)
        .where((col(DataFlow.dest_endpoint_id) == row.id) | (col(DataFlow.source_endpoint_id) == row.id))
        .order_by(DataFlow.name)
    ).all()
    flows = [f for f in referring if f.removed_at is None]
    if flows and not force:
        names = ", ".join(f.name for f in flows)
        raise EndpointInUse(
            f"endpoint {name!r} is used by data flow(s) {names}: remove them (tradelane flow remove) or "
            "point them elsewhere (tradelane flow set NAME --dest OTHER), or pass --force to disable them"
        )
    from core.flow_disable import disable_all

    now = utcnow()
    disabled = disable_all(session, flows, reason=f"endpoint {name} removed", actor=actor, now=now)
    if referring:
        row.name = f"{name}.removed.{row.id}"
        row.removed_at = now
        session.add(row)
    else:
        session.delete(row)
    audit.record(
        session,
        "endpoint.remove",
        actor=actor,
        account_id=row.account_id,
        target=name,
        flows_disabled=disabled,
    )
    return disabled


def open_row(row: EndpointRow) -> Endpoint:
    """A live Endpoint for a stored row, secrets decrypted only in memory. Its secrets join the
    ones this process scrubs from everything it emits (logs, artifacts, events)."""
    endpoint = open_endpoint(row.type, dict(row.config), decrypt_json(row.secrets))
    redact.remember(endpoint.scrubber)
    return endpoint


def row_secret_names(row: EndpointRow) -> list[str]:
    """Which secrets a stored endpoint has (names only, for `endpoint list`)."""
    try:
        return secret_names(decrypt_json(row.secrets))
    except SecretKeyError:
        return ["(stored; they do not open with this secret key)"]


def row_scrubber(row: EndpointRow) -> redact.Scrubber:
    """Hides one stored endpoint's secrets, even when its settings no longer build an endpoint.
    Secrets that do not open with this secret key are unknown, so nothing is hidden for them."""
    try:
        secrets = decrypt_json(row.secrets)
    except SecretKeyError:
        return redact.Scrubber()
    try:
        endpoint = open_endpoint(row.type, dict(row.config), secrets)
    except EndpointError:  # a row that no longer builds: hide every string it keeps secret
        strings = redact.secret_strings(secrets)
        return redact.Scrubber(strings | {part for s in strings if "://" in s for part in url_secrets(s)})
    with endpoint:
        return endpoint.scrubber


def scrubber(session: Session) -> redact.Scrubber:
    """Hides every configured endpoint secret of the account: for what operators are shown
    (transfer errors and answers recorded by any process, at any time)."""
    forms = {form for row in list_all(session) for form in row_scrubber(row).values}
    return redact.Scrubber(forms, expanded=True)
