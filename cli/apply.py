"""`tradelane apply -f FILE`: partners, endpoints and data flows declared in YAML, applied idempotently.

```yaml
partners:
  - name: acme
    password: s3cret          # or password_env: ACME_PASSWORD
endpoints:
  - name: archive
    type: file
    path: /srv/archive
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
```
Applying the same file twice changes nothing the second time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from sqlmodel import Session

from core import dataflows, partners
from core.crypto import decrypt_json, verify_password
from core.endpoints import store as endpoint_store
from core.validators import parse_cli_spec

ENDPOINT_KEYS = {"name", "type", "secrets"}
FLOW_FIELDS = ("pattern", "dest_path", "retries", "retry_delay_seconds", "enabled")


class ApplyError(ValueError):
    """The YAML file is not a valid declaration."""


def apply_file(session: Session, path: Path, progress: Console | None = None) -> list[str]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ApplyError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) - {"partners", "endpoints", "flows"}:
        raise ApplyError(f"{path}: expected only the keys partners, endpoints, flows")
    changes: list[str] = []
    for item in _items(doc, "partners"):
        changes.append(_apply_partner(session, item))
    for item in _items(doc, "endpoints"):
        changes.append(_apply_endpoint(session, item))
    for item in _items(doc, "flows"):
        changes.append(_apply_flow(session, item))
    if progress is not None and not changes:
        progress.print("nothing declared")
    return changes


def _items(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = doc.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("name") for i in items):
        raise ApplyError(f"{key}: expected a list of mappings, each with a name")
    return items


def _apply_partner(session: Session, item: dict[str, Any]) -> str:
    name = item["name"]
    password = item.get("password")
    if item.get("password_env"):
        password = os.environ.get(item["password_env"])
        if password is None:
            raise ApplyError(f"partner {name}: environment variable {item['password_env']} is not set")
    keys = list(item.get("ssh_keys") or [])
    existing = partners.get(session, name)
    if existing is None:
        partners.add(session, name, password=password, ssh_public_keys=keys, actor="apply")
        return f"partner {name}: created"
    changed = False
    if password and not verify_password(existing.password_hash, password):
        partners.set_password(session, existing, password, actor="apply")
        changed = True
    if keys and keys != existing.ssh_public_keys:
        existing.ssh_public_keys = keys
        session.add(existing)
        changed = True
    return f"partner {name}: {'updated' if changed else 'unchanged'}"


def _apply_endpoint(session: Session, item: dict[str, Any]) -> str:
    name, type_ = item["name"], item.get("type")
    if not type_:
        raise ApplyError(f"endpoint {name}: type is required")
    config = {k: v for k, v in item.items() if k not in ENDPOINT_KEYS}
    if type_ == "file" and "path" in config:
        config["path"] = str(Path(config["path"]).expanduser().resolve())
    secrets = dict(item.get("secrets") or {})
    existing = endpoint_store.get(session, name)
    unchanged = (
        existing is not None
        and existing.type == type_
        and existing.config == config
        and decrypt_json(existing.secrets) == secrets
    )
    if unchanged:
        return f"endpoint {name}: unchanged"
    endpoint_store.add(session, name, type_, config, secrets, actor="apply", replace=True)
    return f"endpoint {name}: {'created' if existing is None else 'updated'}"


def _apply_flow(session: Session, item: dict[str, Any]) -> str:
    name = item["name"]
    for key in ("source", "dest"):
        if not item.get(key):
            raise ApplyError(f"flow {name}: {key} is required")
    validators = [v if isinstance(v, dict) else parse_cli_spec(str(v)) for v in item.get("validators") or []]
    wanted: dict[str, Any] = {
        "pattern": item.get("pattern", "*"),
        "dest_path": item.get("dest_path", "{name}"),
        "retries": int(item.get("retries", 5)),
        "retry_delay_seconds": float(item.get("retry_delay", item.get("retry_delay_seconds", 2.0))),
        "enabled": bool(item.get("enabled", True)),
    }
    if item["dest"].startswith("mailbox:"):
        endpoint_store.mailbox_endpoint(session, item["dest"].removeprefix("mailbox:"))
        if "dest_path" not in item:
            wanted["dest_path"] = "download/{name}"
    if item.get("every") is not None:
        wanted["schedule_interval_seconds"] = dataflows.parse_interval(str(item["every"]))
    if item.get("cron") is not None:
        wanted["schedule_cron"] = str(item["cron"])
    if item.get("after_pull") is not None:
        wanted["after_pull"] = str(item["after_pull"])
    # Absent: the destination type's default (stored as None), so a re-apply changes nothing.
    wanted["on_conflict"] = None if item.get("on_conflict") is None else str(item["on_conflict"]).lower()
    existing = dataflows.get(session, name)
    if existing is not None:
        dest_row = endpoint_store.require(session, item["dest"])
        same = (
            all(getattr(existing, k) == v for k, v in wanted.items())
            and existing.validators == validators
            and existing.dest_endpoint_id == dest_row.id
            and dataflows.parse_source(session, item["source"])
            == (existing.source_partner_id, existing.source_endpoint_id, existing.source_folder)
        )
        if same:
            return f"flow {name}: unchanged"
    options = dict(wanted)
    every = options.pop("schedule_interval_seconds", None)
    cron = options.pop("schedule_cron", None)
    dataflows.add(
        session,
        name,
        source=item["source"],
        dest=item["dest"],
        validators=validators,
        replace=True,
        actor="apply",
        every_seconds=every,
        cron=cron,
        **options,
    )
    return f"flow {name}: {'created' if existing is None else 'updated'}"
