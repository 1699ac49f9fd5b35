"""`tradelane apply -f FILE`: partners, endpoints and data flows declared in YAML, applied idempotently.

```yaml
account: globex                 # optional: the account (tenant) it all belongs to; default home
partners:
  - name: acme
    password_env: ACME_PASSWORD   # or password: ... (checked by the password policy)
    email: edi@acme.example
    allowed_networks: [203.0.113.0/24]
    max_file_size: 50MiB
    max_sessions: 4
    max_concurrent: 2             # its files carried at once on every worker; 0 or none: unlimited
    contact_emails: [ops@acme.example]  # told of its rejected uploads and files in download/:
    tell_rejected: true           # (tradelane partner set --contact-email/--tell-rejected/--tell-downloads)
    tell_downloads: true
endpoints:
  - name: archive
    type: file
    path: /srv/archive
    max_concurrent: 4             # files carried to/from it at once; absent, 0 or none: unlimited
  - name: lake
    type: s3
    bucket: inbound
    prefix: acme/
    endpoint_url: http://127.0.0.1:9000
    secrets: {access_key_id: AKIA..., secret_access_key: ...}
flows:
  - name: acme-to-lake
    source: mailbox:acme
    dest: lake
    pattern: "*.json"
    validators: [json, max_size=10MiB]
    retries: 3
    on_conflict: rename       # or overwrite, fail; default: the destination type's
  - name: orders-stamped
    source: mailbox:acme
    dest: lake
    template: stamp           # the flow template it runs (tradelane template list); default transfer
    params: {starts_with: ISA}  # checked against the template's params model
```
Applying the same file twice changes nothing the second time. Every key is checked before anything
is applied: an unknown key anywhere (a typo such as `allowed_network`) is refused with its path,
`partners[0].allowed_network: unknown key`, and so is a value of the wrong kind. A setting left out
keeps its current value.

The account is the file's `account:`, else `--account`/`TRADELANE_ACCOUNT`, else `home`; a file
that names another account than the one given is refused. `apply` never creates accounts
(`tradelane account add`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from sqlmodel import Session

from core import concurrency_limits, dataflows, partners
from core.crypto import decrypt_json, verify_password
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import ConfigError, Endpoint
from core.endpoints.registry import endpoint_class, user_types
from core.endpoints.settings import SettingsError, local_paths
from core.errors import said
from core.notify.channels import check_addresses
from core.tenancy import Scope, scope_for_cli
from core.validators import parse_cli_spec, parse_size

SECTIONS = ("partners", "endpoints", "flows")
TOP_KEYS = ("account", *SECTIONS)
PARTNER_KEYS = frozenset(
    {
        "name",
        "password",
        "password_env",
        "ssh_keys",
        "email",
        "enabled",
        "allowed_networks",
        "max_file_size",
        "max_file_bytes",  # the stored name, accepted as an alias of max_file_size
        "max_sessions",
        "max_concurrent",
        "contact_emails",
        "tell_rejected",
        "tell_downloads",
        "can_delete_downloads",
    }
)
FLOW_KEYS = frozenset(
    {
        "name",
        "source",
        "dest",
        "pattern",
        "dest_path",
        "validators",
        "retries",
        "retry_delay",
        "retry_delay_seconds",
        "enabled",
        "every",
        "cron",
        "after_pull",
        "source_folder",
        "on_conflict",
        "template",
        "params",
    }
)
ENDPOINT_KEYS = frozenset(
    {"name", "type", "secrets", "max_concurrent"}
)  # plus the type's settings (its model's fields)


class ApplyError(ValueError):
    """The YAML file is not a valid declaration; the message names the key's path."""


def apply_file(
    session: Session, path: Path, progress: Console | None = None, account: str | None = None
) -> list[str]:
    """Apply the file in its account: its `account:` key, else `account` (`--account`), else home."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ApplyError(f"{path}: not valid YAML: {exc}") from exc
    check_document(doc)
    declared = doc.get("account")
    if declared is not None and account is not None and declared != account:
        raise ApplyError(f"the file says account: {declared} but --account is {account}")
    scope = scope_for_cli(session, declared or account or "home")
    changes: list[str] = []
    for i, item in enumerate(doc.get("partners") or []):
        changes.append(_apply_partner(session, scope, item, f"partners[{i}]"))
    for item in doc.get("endpoints") or []:
        changes.append(_apply_endpoint(session, scope, item))
    for item in doc.get("flows") or []:
        changes.append(_apply_flow(session, scope, item))
    if progress is not None and not changes:
        progress.print("nothing declared")
    return changes


# -- checking, before anything is applied ----------------------------------------------------------


def _unknown(where: str, item: dict[str, Any], known: frozenset[str], what: str) -> None:
    for key in item:
        if key not in known:
            raise ApplyError(f"{where}.{key}: unknown key for {what} (known: {', '.join(sorted(known))})")


def _expect(where: str, value: Any, kind: type | tuple[type, ...], described: str) -> None:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ApplyError(f"{where}: expected {described}, got {value!r}")
    if not isinstance(value, kind):
        raise ApplyError(f"{where}: expected {described}, got {value!r}")


def check_document(doc: Any) -> None:
    """Every key known and every value of the right kind; ApplyError naming the first that is not."""
    if not isinstance(doc, dict):
        raise ApplyError("the file must be a mapping with partners, endpoints and/or flows")
    for key in doc:
        if key not in TOP_KEYS:
            raise ApplyError(f"{key}: unknown key (expected only the keys {', '.join(TOP_KEYS)})")
    if "account" in doc and (not isinstance(doc["account"], str) or not doc["account"]):
        raise ApplyError(f"account: expected the name of an account, got {doc['account']!r}")
    for section in SECTIONS:
        items = doc.get(section) or []
        if not isinstance(items, list):
            raise ApplyError(f"{section}: expected a list of mappings")
        for i, item in enumerate(items):
            where = f"{section}[{i}]"
            if not isinstance(item, dict):
                raise ApplyError(f"{where}: expected a mapping")
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise ApplyError(f"{where}.name: required (a non-empty string)")
            {"partners": _check_partner, "endpoints": _check_endpoint, "flows": _check_flow}[section](
                where, item
            )


def _check_partner(where: str, item: dict[str, Any]) -> None:
    _unknown(where, item, PARTNER_KEYS, "a partner")
    for key in ("password", "password_env", "email"):
        if key in item and item[key] is not None:
            _expect(f"{where}.{key}", item[key], str, "a string")
    for key in ("enabled", "can_delete_downloads", "tell_rejected", "tell_downloads"):
        if key in item:
            _expect(f"{where}.{key}", item[key], bool, "true or false")
    if item.get("contact_emails") is not None:
        contacts = item["contact_emails"]
        _expect(f"{where}.contact_emails", contacts, list, "a list of e-mail addresses")
        for j, address in enumerate(contacts):
            _expect(f"{where}.contact_emails[{j}]", address, str, "an e-mail address")
            _value(f"{where}.contact_emails[{j}]", check_addresses, address)
    if "ssh_keys" in item:
        keys = item["ssh_keys"]
        _expect(f"{where}.ssh_keys", keys, list, "a list of OpenSSH public key lines")
        for j, line in enumerate(keys):
            _expect(f"{where}.ssh_keys[{j}]", line, str, "an OpenSSH public key line")
            _value(f"{where}.ssh_keys[{j}]", partners.check_public_key, line)
    if "allowed_networks" in item:
        nets = item["allowed_networks"]
        _expect(f"{where}.allowed_networks", nets, list, "a list of networks (CIDR)")
        for j, net in enumerate(nets):
            _value(f"{where}.allowed_networks[{j}]", lambda n: partners.check_networks([str(n)]), net)
    if "max_file_size" in item and "max_file_bytes" in item:
        raise ApplyError(f"{where}: give max_file_size or max_file_bytes, not both")
    for key in ("max_file_size", "max_file_bytes"):
        if item.get(key) is not None:
            size = _value(f"{where}.{key}", parse_size, item[key])
            if size < 1:
                raise ApplyError(f"{where}.{key}: must be at least 1 byte")
    if item.get("max_sessions") is not None:
        _expect(f"{where}.max_sessions", item["max_sessions"], int, "a whole number of sessions")
        if item["max_sessions"] < 1:
            raise ApplyError(f"{where}.max_sessions: must be at least 1")
    if item.get("email"):
        _value(f"{where}.email", partners.check_email, item["email"])
    if "max_concurrent" in item:
        _value(f"{where}.max_concurrent", concurrency_limits.parse, item["max_concurrent"])


def _check_endpoint(where: str, item: dict[str, Any]) -> None:
    """An endpoint's keys are its type's settings, plus `secrets`: both checked by the type's models."""
    type_ = item.get("type")
    if not isinstance(type_, str) or not type_:
        raise ApplyError(f"{where}.type: required ({', '.join(user_types())})")
    try:
        cls = endpoint_class(type_)
    except ConfigError as exc:
        raise ApplyError(f"{where}.type: {exc}") from None
    if cls.internal and type_ != "mailbox":  # tradelane makes these itself (a connection's `peer`)
        raise ApplyError(f"{where}.type: unknown endpoint type {type_!r}; known: {', '.join(user_types())}")
    secrets = item.get("secrets")
    if secrets is not None:
        _expect(f"{where}.secrets", secrets, dict, "a mapping")
    if "max_concurrent" in item:
        if cls.internal:
            raise ApplyError(f"{where}.max_concurrent: a {type_} endpoint takes no concurrency limit")
        _value(f"{where}.max_concurrent", concurrency_limits.parse, item["max_concurrent"])
    try:
        cls.parse(*_endpoint_settings(cls, item))
    except SettingsError as exc:
        raise ApplyError(_settings_problems(where, exc)) from None
    except ConfigError as exc:  # http's credential headers given two ways, and the like
        raise ApplyError(f"{where}: {exc}") from None


def _endpoint_settings(cls: type[Endpoint], item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, secrets) as the YAML gives them, local paths made absolute."""
    config = {k: v for k, v in item.items() if k not in ENDPOINT_KEYS}
    return local_paths(cls.settings_model, config), local_paths(
        cls.secrets_model, dict(item.get("secrets") or {})
    )


def _settings_problems(where: str, exc: SettingsError) -> str:
    """Each problem at its YAML path: `endpoints[0].bucket: unknown key for a file endpoint`."""
    lines = []
    for problem in exc.problems:
        path = ".".join([where, *(["secrets"] if problem.secret else []), *map(str, problem.loc)])
        if problem.kind == "unknown":
            known = ", ".join(exc.known[1] if problem.secret else exc.known[0])
            what = f"the secrets of a {exc.scheme} endpoint" if problem.secret else f"a {exc.scheme} endpoint"
            lines.append(f"{path}: unknown key for {what} (known: {known})")
        elif problem.kind == "missing":
            lines.append(f"{path}: required for a {exc.scheme} endpoint")
        elif problem.loc:
            lines.append(f"{path}: {problem.message}")
        else:
            lines.append(f"{where}: {problem.message}")
    return "; ".join(lines)


def _check_flow(where: str, item: dict[str, Any]) -> None:
    _unknown(where, item, FLOW_KEYS, "a data flow")
    if not isinstance(item.get("source"), str) or not item["source"]:
        raise ApplyError(f"{where}.source: required (a string)")
    if item.get("dest") is not None:
        _expect(f"{where}.dest", item["dest"], str, "a string")
    for key in ("pattern", "dest_path", "after_pull", "cron", "source_folder", "template"):
        if key in item and item[key] is not None:
            _expect(f"{where}.{key}", item[key], str, "a string")
    if "enabled" in item:
        _expect(f"{where}.enabled", item["enabled"], bool, "true or false")
    if "retries" in item:
        _expect(f"{where}.retries", item["retries"], int, "a whole number")
    for key in ("retry_delay", "retry_delay_seconds"):
        if key in item:
            _expect(f"{where}.{key}", item[key], (int, float), "a number of seconds")
    if item.get("params") is not None:
        _expect(f"{where}.params", item["params"], dict, "a mapping of param names to values")
    if item.get("template") is not None or item.get("params"):
        _value(f"{where}.params", _checked_params, item)
    _value(f"{where}.dest", _destination, item)
    if "validators" in item:
        _expect(f"{where}.validators", item["validators"], list, "a list of checks")
        for j, spec in enumerate(item["validators"]):
            if not isinstance(spec, dict):
                _value(f"{where}.validators[{j}]", parse_cli_spec, str(spec))


def _destination(item: dict[str, Any]) -> str:
    """The flow's destination: `dest`, or the first a routing template's params name (which then
    takes no `dest`)."""
    from tradelane import templates

    return templates.destination(
        item.get("template") or templates.DEFAULT, _checked_params(item), item.get("dest")
    )


def _checked_params(item: dict[str, Any]) -> dict[str, Any]:
    """The flow's params checked against its template's model (an unknown template lists the known)."""
    from tradelane import templates

    return templates.checked_params(item.get("template") or templates.DEFAULT, item.get("params") or {})


def _value(where: str, check: Any, value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:  # a status error's words, at the place in the file
        raise ApplyError(f"{where}: {said(exc)}") from None


# -- applying -------------------------------------------------------------------------------------


def _apply_partner(session: Session, scope: Scope, item: dict[str, Any], where: str) -> str:
    name = item["name"]
    password = item.get("password")
    if item.get("password_env"):
        password = os.environ.get(item["password_env"])
        if password is None:
            raise ApplyError(f"{where}.password_env: environment variable {item['password_env']} is not set")
    keys = list(item.get("ssh_keys") or [])
    settings: dict[str, Any] = {}
    if "allowed_networks" in item:
        settings["allowed_networks"] = [str(n) for n in item["allowed_networks"] or []]
    size = item.get("max_file_size", item.get("max_file_bytes", ...))
    if size is not ...:
        settings["max_file_bytes"] = parse_size(size) if size is not None else None
    if "max_sessions" in item:
        settings["max_sessions"] = item["max_sessions"]
    if "max_concurrent" in item:
        settings["max_concurrent"] = item["max_concurrent"]
    if "email" in item:
        settings["email"] = item["email"] or None
    for key in ("enabled", "can_delete_downloads", "tell_rejected", "tell_downloads"):
        if key in item:
            settings[key] = item[key]
    if "contact_emails" in item:
        settings["contact_emails"] = ",".join(item["contact_emails"] or [])
    existing = partners.get(session, scope, name)
    if existing is None or existing.removed_at is not None:
        partner = _value(
            where,
            lambda _: partners.add(session, scope, name, password=password, ssh_public_keys=keys),
            name,
        )
        _value(where, lambda _: partners.configure(session, scope, partner, **settings), name)
        return f"partner {name}: created"
    new_password = password if password and not verify_password(existing.password_hash, password) else None
    changes = _value(
        where,
        lambda _: partners.configure(session, scope, existing, password=new_password, **settings),
        name,
    )
    changed = bool(changes)
    if keys and [partners.check_public_key(k) for k in keys] != existing.ssh_public_keys:
        existing.ssh_public_keys = [partners.check_public_key(k) for k in keys]
        session.add(existing)
        changed = True
    return f"partner {name}: {'updated' if changed else 'unchanged'}"


def _apply_endpoint(session: Session, scope: Scope, item: dict[str, Any]) -> str:
    name, type_ = item["name"], item["type"]
    # Compared as they are stored: parsed by the type's models (an http URL's query values and
    # credential headers moved into the secrets).
    config, secrets = endpoint_rows.prepare(type_, *_endpoint_settings(endpoint_class(type_), item))
    existing = endpoint_rows.get(session, scope, name)
    unchanged = (
        existing is not None
        and existing.type == type_
        and existing.config == config
        and decrypt_json(existing.secrets) == secrets
    )
    # Declared whole, as its settings are: absent is unlimited.
    limit = concurrency_limits.parse(item.get("max_concurrent"))
    if not unchanged:
        endpoint_rows.add(session, scope, name, type_, config, secrets, replace=True)
    limited = type_ != "mailbox" and concurrency_limits.set_endpoint(session, scope, name, limit)
    if unchanged and not limited:
        return f"endpoint {name}: unchanged"
    return f"endpoint {name}: {'created' if existing is None else 'updated'}"


def _apply_flow(session: Session, scope: Scope, item: dict[str, Any]) -> str:
    item = {**item, "dest": _destination(item)}
    name = item["name"]
    validators = [v if isinstance(v, dict) else parse_cli_spec(str(v)) for v in item.get("validators") or []]
    wanted: dict[str, Any] = {
        "pattern": item.get("pattern", "*"),
        "dest_path": item.get("dest_path", "{name}"),
        "retries": int(item.get("retries", 5)),
        "retry_delay_seconds": float(item.get("retry_delay", item.get("retry_delay_seconds", 2.0))),
        "enabled": bool(item.get("enabled", True)),
    }
    if item["dest"].startswith("mailbox:"):
        endpoint_rows.mailbox_endpoint(session, scope, item["dest"].removeprefix("mailbox:"))
        if "dest_path" not in item:
            wanted["dest_path"] = dataflows.default_dest_path(item["dest"])
    if item.get("every") is not None:
        wanted["schedule_interval_seconds"] = dataflows.parse_interval(str(item["every"]))
    if item.get("cron") is not None:
        wanted["schedule_cron"] = str(item["cron"])
    if item.get("after_pull") is not None:
        wanted["after_pull"] = str(item["after_pull"])
    # Absent: the destination type's default (stored as None), so a re-apply changes nothing.
    wanted["on_conflict"] = None if item.get("on_conflict") is None else str(item["on_conflict"]).lower()
    wanted["template"] = item.get("template") or "transfer"
    wanted["params"] = _checked_params(item)
    existing = dataflows.get(session, scope, name)
    source_folder = item.get("source_folder")
    if existing is not None:
        dest_row = endpoint_rows.require(session, scope, item["dest"])
        partner_id, endpoint_id, folder = dataflows.parse_source(session, scope, item["source"])
        if source_folder is not None:
            folder = str(source_folder).strip("/")
        same = (
            all(getattr(existing, k) == v for k, v in wanted.items())
            and existing.validators == validators
            and existing.dest_endpoint_id == dest_row.id
            and (partner_id, endpoint_id, folder)
            == (existing.source_partner_id, existing.source_endpoint_id, existing.source_folder)
        )
        if same:
            return f"flow {name}: unchanged"
    options = dict(wanted)
    every = options.pop("schedule_interval_seconds", None)
    cron = options.pop("schedule_cron", None)
    dataflows.add(
        session,
        scope,
        name,
        source=item["source"],
        dest=item["dest"],
        validators=validators,
        replace=True,
        every_seconds=every,
        cron=cron,
        source_folder=source_folder,
        **options,
    )
    return f"flow {name}: {'created' if existing is None else 'updated'}"
