"""http endpoints: secret-bearing settings move from the plain config into the encrypted secrets

Before this, an http endpoint kept `--header 'X-Api-Key: …'`, a URL's `user:password@` and its
query-string keys in `endpoint.config`, which `endpoint list` shows and the audit table recorded.
This moves them into `endpoint.secrets` (Fernet, as every other secret) with the same function the
store uses for new endpoints (core/endpoints/http_settings.py), and rewrites the config recorded
by earlier `endpoint.add` audit events the same way. A row whose secrets do not open with this
secret key is left as it is (it could not be used either) and reported in the log.

Data only: no schema change.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 12:00:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from core.crypto import SecretKeyError, decrypt_json, encrypt_json
from core.endpoints.http_settings import split_stored
from core.endpoints.rows import secret_names

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

endpoint = sa.table(
    "endpoint",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("type", sa.String),
    sa.column("config", sa.JSON),
    sa.column("secrets", sa.String),
)
audit_event = sa.table(
    "auditevent",
    sa.column("id", sa.Integer),
    sa.column("action", sa.String),
    sa.column("detail", sa.JSON),
)


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(endpoint.c.id, endpoint.c.name, endpoint.c.config, endpoint.c.secrets).where(
            endpoint.c.type == "http"
        )
    ).all()
    for row_id, name, config, token in rows:
        try:
            secrets = decrypt_json(token)
        except SecretKeyError:
            log.warning("endpoint %s: its secrets do not open with this secret key; left as it is", name)
            continue
        new_config, new_secrets = split_stored(dict(config or {}), secrets)
        if new_config == config and new_secrets == secrets:
            continue
        bind.execute(
            endpoint.update()
            .where(endpoint.c.id == row_id)
            .values(config=new_config, secrets=encrypt_json(new_secrets) if new_secrets else None)
        )
    events = bind.execute(
        sa.select(audit_event.c.id, audit_event.c.detail).where(audit_event.c.action == "endpoint.add")
    ).all()
    for event_id, detail in events:
        if not isinstance(detail, dict) or detail.get("type") != "http":
            continue
        recorded = detail.get("config")
        if not isinstance(recorded, dict):
            continue
        new_config, moved = split_stored(recorded, {})
        if new_config == recorded:
            continue
        names = sorted(set(detail.get("secrets") or []) | set(secret_names(moved)))
        bind.execute(
            audit_event.update()
            .where(audit_event.c.id == event_id)
            .values(detail={**detail, "config": new_config, "secrets": names})
        )


def downgrade() -> None:
    """Nothing to undo: the secrets stay encrypted (an older tradelane reads a masked URL)."""
