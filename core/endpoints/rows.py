"""Endpoints as database rows: create them (secrets encrypted), find them, open them, remove them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlmodel import Session, col, select

from core import audit, redact
from core.crypto import SecretKeyError, decrypt_json, encrypt_json
from core.endpoints import file_roots
from core.endpoints.base import ConfigError, Endpoint, EndpointError
from core.endpoints.http_settings import url_secrets
from core.endpoints.registry import endpoint_class
from core.endpoints.settings import EndpointSecrets, EndpointSettings
from core.errors import Conflict, Invalid, NotFound
from core.models import Endpoint as EndpointRow
from core.models import Partner, utcnow
from core.object_names import validate_name
from core.tenancy import Scope, account_name

MAILBOX_PREFIX = "mailbox:"

log = logging.getLogger(__name__)


class NoSuchEndpoint(ConfigError, NotFound):
    """No endpoint of that name in the scope's account (404 on every surface)."""


class EndpointExists(ConfigError, Conflict):
    """The name is taken (409)."""


class BadEndpointChange(ConfigError, Invalid):
    """A change that names no setting of the endpoint's type (400)."""


def get(session: Session, scope: Scope, name: str) -> EndpointRow | None:
    return session.exec(
        select(EndpointRow).where(EndpointRow.account_id == scope.account_id, EndpointRow.name == name)
    ).first()


def require(session: Session, scope: Scope, name: str) -> EndpointRow:
    row = get(session, scope, name)
    if row is None:
        if name.startswith(MAILBOX_PREFIX):
            return mailbox_endpoint(session, scope, name.removeprefix(MAILBOX_PREFIX))
        raise NoSuchEndpoint(f"no endpoint named {name!r}")
    return row


def add(
    session: Session,
    scope: Scope,
    name: str,
    type_: str,
    config: EndpointSettings | Mapping[str, Any],
    secrets: EndpointSecrets | Mapping[str, Any] | None = None,
    *,
    replace: bool = False,
) -> EndpointRow:
    """Store an endpoint; its settings are parsed once, by its type's models, and refused (naming
    every problem) before anything is stored."""
    scope.require_to("endpoints.change")
    return _add(session, scope, name, type_, config, secrets, replace=replace)


def _add(
    session: Session,
    scope: Scope,
    name: str,
    type_: str,
    config: EndpointSettings | Mapping[str, Any],
    secrets: EndpointSecrets | Mapping[str, Any] | None = None,
    *,
    replace: bool = False,
) -> EndpointRow:
    if not name.startswith(MAILBOX_PREFIX):
        validate_name(name)
    cls = endpoint_class(type_)
    settings, secret_model = cls.parse(config, secrets)
    check_local_folders(scope, cls, settings)
    row = get(session, scope, name)
    if row is not None and not replace:
        raise EndpointExists(f"endpoint {name!r} already exists")
    if row is None:
        row = EndpointRow(account_id=scope.account_id, name=name, type=type_)
    row.type = type_
    _store(session, row, cls(settings, secret_model), "endpoint.add", scope.actor)
    return row


def set_settings(
    session: Session,
    scope: Scope,
    name: str,
    changes: Mapping[str, Any],
    secret_changes: Mapping[str, Any],
    unset: Iterable[str] = (),
) -> list[str]:
    """Change some settings and secrets of a stored endpoint (the others stay) and say which
    changed: setting names, and secret names (never values). A key given anew replaces that key
    in both the settings and the secrets (http's headers are one list kept in the two); `unset`
    takes keys back to their defaults."""
    scope.require_to("endpoints.change")
    row = get(session, scope, name)
    if row is None or row.removed_at is not None or endpoint_class(row.type).internal:
        raise NoSuchEndpoint(f"no endpoint named {name!r}")
    cls = endpoint_class(row.type)
    config, secrets, dropped = known_only(cls, dict(row.config), decrypt_json(row.secrets))
    before = dict(config), dict(secrets)
    for key in unset:
        known_key = key in cls.settings_model.field_keys() or key in cls.secrets_model.field_keys()
        if not known_key and key not in dropped:
            known = ", ".join(cls.settings_model.field_keys() + cls.secrets_model.field_keys())
            raise BadEndpointChange(f"{row.type} endpoint has no setting {key!r} to unset (known: {known})")
        config.pop(key, None)
        secrets.pop(key, None)
    for key in {*changes, *secret_changes}:
        config.pop(key, None)
        secrets.pop(key, None)
    config.update(changes)
    secrets.update(secret_changes)
    settings, secret_model = cls.parse(config, secrets)
    check_local_folders(scope, cls, settings)
    stored_config, stored_secrets = settings.stored(), secret_model.stored()
    old_config, old_secrets = before
    changed = [k for k in sorted({*old_config, *stored_config}) if old_config.get(k) != stored_config.get(k)]
    changed += [
        f"{k} (secret)"
        for k in sorted({*old_secrets, *stored_secrets})
        if old_secrets.get(k) != stored_secrets.get(k)
    ]
    changed += [f"{key} (unknown, dropped)" for key in dropped]
    if changed:
        _store(session, row, cls(settings, secret_model), "endpoint.set", scope.actor)
    return changed


def _store(session: Session, row: EndpointRow, endpoint: Endpoint, action: str, actor: str) -> None:
    """Write an endpoint's models into its row (secrets encrypted) and audit it: which secrets
    are set, never their values (should one also sit in a plain setting, it is hidden there too)."""
    with endpoint:
        config, secrets = endpoint.settings.stored(), endpoint.secrets.stored()
        row.config = config
        row.secrets = encrypt_json(secrets) if secrets else None
        session.add(row)
        session.flush()
        audit.record(
            session,
            action,
            actor=actor,
            account_id=row.account_id,
            target=row.name,
            type=row.type,
            config=endpoint.scrubber.data(config),
            secrets=secret_names(secrets),
        )


def check_local_folders(scope: Scope, cls: type[Endpoint], settings: EndpointSettings) -> None:
    """Local paths an account user gives (a `file` endpoint's folder, a CA file, a spool folder)
    inside the account's allowed roots (core/endpoints/file_roots.py); the operator may give any."""
    if not cls.internal:
        file_roots.check_added(scope, settings)


def prepare(
    type_: str,
    config: Mapping[str, Any],
    secrets: Mapping[str, Any] | None,
    scope: Scope | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (config, secrets) an endpoint is stored with: parsed by its type's models (secret-
    bearing settings moved into the secrets), as JSON; with `scope`, checked as `add` checks them."""
    cls = endpoint_class(type_)
    settings, secret_model = cls.parse(config, secrets)
    if scope is not None:
        check_local_folders(scope, cls, settings)
    return settings.stored(), secret_model.stored()


def known_only(
    cls: type[Endpoint], config: dict[str, Any], secrets: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A stored row's settings without keys its type does not know (a row stored before every
    key was checked may hold a typo, which was ignored then too), and those keys' names."""
    settings_keys, secret_keys = set(cls.settings_model.field_keys()), set(cls.secrets_model.field_keys())
    dropped = sorted(
        {k for k in config if k not in settings_keys} | {k for k in secrets if k not in secret_keys}
    )
    return (
        {k: v for k, v in config.items() if k in settings_keys},
        {k: v for k, v in secrets.items() if k in secret_keys},
        dropped,
    )


def secret_names(secrets: dict[str, Any]) -> list[str]:
    """Which secrets are set, never their values: `bearer`, `headers.X-Api-Key`, `urls.url`."""
    names: list[str] = []
    for key, value in secrets.items():
        if isinstance(value, dict) and value:
            names += [f"{key}.{inner}" for inner in value]
        else:
            names.append(key)
    return sorted(names)


def mailbox_endpoint(session: Session, scope: Scope, partner_name: str) -> EndpointRow:
    """The implicit `mailbox:PARTNER` endpoint (a partner's mailbox as a destination)."""
    # Queried here rather than with core.partners, which imports this module (it detaches a
    # removed partner's mailbox endpoint).
    partner = session.exec(
        select(Partner.id).where(
            Partner.account_id == scope.account_id,
            Partner.name == partner_name,
            col(Partner.removed_at).is_(None),
        )
    ).first()
    if partner is None:
        raise NoSuchEndpoint(f"no partner named {partner_name!r}")
    name = f"{MAILBOX_PREFIX}{partner_name}"
    row = get(session, scope, name)
    if row is None:  # made on first use, by whoever reads it: the partner's, not a caller's change
        row = _add(session, scope, name, "mailbox", {"partner": partner_name, "account": scope.account_name})
    return row


def list_all(session: Session, scope: Scope) -> list[EndpointRow]:
    return list(
        session.exec(
            select(EndpointRow)
            .where(EndpointRow.account_id == scope.account_id, col(EndpointRow.removed_at).is_(None))
            .order_by(EndpointRow.name)
        )
    )


class EndpointInUse(ConfigError, Conflict):
    """Data flows still take from or deliver to the endpoint; the message names them (409)."""


def remove(session: Session, scope: Scope, name: str, *, force: bool = False) -> list[str]:
    """Remove an endpoint; refused while data flows use it, naming them, unless `force`.

    With `force` those flows are disabled (their names are returned) and the endpoint is kept,
    renamed `<name>.removed.<id>`, for their history; a flow cannot be enabled again until it is
    pointed at another endpoint. An endpoint nothing refers to is deleted.
    """
    scope.require_to("endpoints.change")
    from core.models import DataFlow

    actor = scope.actor
    row = get(session, scope, name)
    if row is None or row.removed_at is not None:
        raise NoSuchEndpoint(f"no endpoint named {name!r}")
    referring = session.exec(
        select(DataFlow)
        .where((col(DataFlow.dest_endpoint_id) == row.id) | (col(DataFlow.source_endpoint_id) == row.id))
        .order_by(DataFlow.name)
    ).all()
    flows = [f for f in referring if f.removed_at is None]
    landing_in = _connections_landing_in(session, row.id)
    live = [c for c in landing_in if c.state in ("pending", "active")]
    if live and not force:
        names = ", ".join(f"{c.receiver_name!r} (data flow b2b:{c.id})" for c in live)
        raise EndpointInUse(
            f"endpoint {name!r} is used by connection(s) {names}: revoke them "
            "(tradelane connect revoke NAME), or pass --force to stop their deliveries"
        )
    if flows and not force:
        names = ", ".join(f.name for f in flows)
        raise EndpointInUse(
            f"endpoint {name!r} is used by data flow(s) {names}: remove them (tradelane flow remove) or "
            "point them elsewhere (tradelane flow set NAME --dest OTHER), or pass --force to disable them"
        )
    from core.flow_disable import disable_all

    now = utcnow()
    disabled = disable_all(session, flows, reason=f"endpoint {name} removed", actor=actor, now=now)
    if referring or landing_in:  # kept for the history (and connections) that name it
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


def _connections_landing_in(session: Session, endpoint_id: int | None) -> list[Any]:
    """B2B connections whose files land in the endpoint (core/b2b): it cannot vanish under them."""
    from core.models import Connection

    return list(session.exec(select(Connection).where(Connection.dest_endpoint_id == endpoint_id)))


def open_row(row: EndpointRow) -> Endpoint:
    """A live Endpoint for a stored row, secrets decrypted only in memory. Its secrets join the
    ones this process scrubs from everything it emits (logs, artifacts, events)."""
    cls = endpoint_class(row.type)
    config, secrets, dropped = known_only(cls, dict(row.config), decrypt_json(row.secrets))
    if dropped:
        log.warning(
            "endpoint %s: ignoring stored keys its type does not know: %s "
            "(remove them with `tradelane endpoint set %s --unset KEY`)",
            row.name,
            ", ".join(dropped),
            row.name,
        )
    endpoint = cls(config, secrets)
    endpoint.account_id = row.account_id
    if not cls.internal and file_roots.local_paths(endpoint.settings):
        file_roots.check_opened(account_name(row.account_id), endpoint.settings)
    redact.remember(endpoint.scrubber)
    return endpoint


def shown_settings(row: EndpointRow) -> dict[str, Any]:
    """A stored endpoint's settings as its model shows them (what was set, defaults left out),
    with any secret value hidden; the stored config, hidden the same way, if it no longer parses."""
    scrubber = row_scrubber(row)
    try:
        with open_row(row) as endpoint:
            return dict(scrubber.data(endpoint.settings.stored()))
    except (EndpointError, SecretKeyError):
        return dict(scrubber.data(dict(row.config)))


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
        cls = endpoint_class(row.type)
        endpoint = cls(*known_only(cls, dict(row.config), secrets)[:2])
    except EndpointError:  # a row that no longer builds: hide every string it keeps secret
        strings = redact.secret_strings(secrets)
        return redact.Scrubber(strings | {part for s in strings if "://" in s for part in url_secrets(s)})
    with endpoint:
        return endpoint.scrubber


def scrubber(session: Session, scope: Scope) -> redact.Scrubber:
    """Hides every configured endpoint secret of the account: for what operators are shown
    (transfer errors and answers recorded by any process, at any time)."""
    forms = {form for row in list_all(session, scope) for form in row_scrubber(row).values}
    return redact.Scrubber(forms, expanded=True)
