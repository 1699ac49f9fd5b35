"""The web: browser sessions, resumable browser uploads, and an account's history by index

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 11:00:00

* `web_session`: one browser login to the portal or console (core/web_sessions.py); only the
  SHA-256 of the cookie value is stored.
* `web_upload`: one resumable (tus) browser upload, bound to its login; at most one open upload
  per login, folder and file name (a partial unique index, which SQLite and PostgreSQL both have).
* `transfer.account_id` (NOT NULL): the data flow's account, copied onto every transfer and
  backfilled here, so an account's history, by state or by page, is one index walk instead of a
  join that sorts every matching row (DESIGN-13 §7.5). SQLite rebuilds `transfer` for the NOT NULL
  (migrations/env.py runs with foreign keys off for that, and checks them after).
* Keyset indexes: transfer (account, id), (account, state, id), (data flow, id) instead of
  (data flow), (account, created), flow run id; receipt (partner, id) and (user, id) instead of
  (partner) and (user); auditevent (account, id) instead of (account).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

UTC_DATETIME = sqlmodel.sql.sqltypes.UTCDateTime
STR = sqlmodel.sql.sqltypes.AutoString
OPEN = sa.text("state = 'open'")

# (index, table, columns) replaced by (index, table, columns): each old one is a prefix of its new one.
REPLACED = (
    (
        ("ix_transfer_data_flow_id", "transfer", ["data_flow_id"]),
        ("ix_transfer_data_flow_id_id", "transfer", ["data_flow_id", "id"]),
    ),
    (
        ("ix_receipt_partner_id", "receipt", ["partner_id"]),
        ("ix_receipt_partner_id_id", "receipt", ["partner_id", "id"]),
    ),
    (("ix_receipt_user_id", "receipt", ["user_id"]), ("ix_receipt_user_id_id", "receipt", ["user_id", "id"])),
    (
        ("ix_auditevent_account_id", "auditevent", ["account_id"]),
        ("ix_auditevent_account_id_id", "auditevent", ["account_id", "id"]),
    ),
)
TRANSFER_INDEXES = (
    ("ix_transfer_account_id_id", ["account_id", "id"]),
    ("ix_transfer_account_state_id", ["account_id", "state", "id"]),
    ("ix_transfer_account_created", ["account_id", "created_at"]),
    ("ix_transfer_flow_run_id", ["flow_run_id"]),
)


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", STR(length=64), nullable=False),
        sa.Column("kind", STR(), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME(), nullable=False),
        sa.Column("last_seen_at", UTC_DATETIME(), nullable=False),
        sa.Column("expires_at", UTC_DATETIME(), nullable=False),
        sa.Column("ended_at", UTC_DATETIME(), nullable=True),
        sa.Column("ended_reason", STR(), nullable=True),
        sa.Column("remote_addr", STR(), nullable=True),
        sa.Column("user_agent", STR(length=200), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_web_session_token_hash", "web_session", ["token_hash"], unique=True)
    op.create_index("ix_web_session_expires_at", "web_session", ["expires_at"])
    op.create_index("ix_web_session_kind_principal_id", "web_session", ["kind", "principal_id"])

    op.create_table(
        "web_upload",
        sa.Column("id", STR(length=32), nullable=False),
        sa.Column("kind", STR(), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("folder", STR(), nullable=False),
        sa.Column("name", STR(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("patches", sa.Integer(), nullable=False),
        sa.Column("state", STR(), nullable=False),
        sa.Column("receipt_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_DATETIME(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME(), nullable=False),
        sa.Column("expires_at", UTC_DATETIME(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["receipt_id"], ["receipt.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_web_upload_open",
        "web_upload",
        ["kind", "principal_id", "folder", "name"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    op.create_index("ix_web_upload_state_updated_at", "web_upload", ["state", "updated_at"])

    _add_transfer_account()
    for (old, table, _), (new, _, columns) in REPLACED:
        op.create_index(new, table, columns)
        op.drop_index(old, table_name=table)
    for name, columns in TRANSFER_INDEXES:
        op.create_index(name, "transfer", columns)


def _add_transfer_account() -> None:
    """transfer.account_id = its data flow's account, then NOT NULL (data flows are never deleted,
    only marked removed, so every transfer has one)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE transfer ADD COLUMN account_id INTEGER REFERENCES account (id)")
    else:
        op.add_column(
            "transfer", sa.Column("account_id", sa.Integer(), sa.ForeignKey("account.id"), nullable=True)
        )
    op.execute(
        "UPDATE transfer SET account_id = "
        "(SELECT dataflow.account_id FROM dataflow WHERE dataflow.id = transfer.data_flow_id)"
    )
    with op.batch_alter_table("transfer", schema=None) as batch_op:
        batch_op.alter_column("account_id", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    for name, _ in TRANSFER_INDEXES:
        op.drop_index(name, table_name="transfer")
    for (old, table, columns), (new, _, _) in REPLACED:
        op.create_index(old, table, columns)
        op.drop_index(new, table_name=table)
    # Dropping a column that holds a REFERENCES rebuilds the table on SQLite.
    with op.batch_alter_table("transfer", schema=None) as batch_op:
        batch_op.drop_column("account_id")
    op.drop_index("ix_web_upload_state_updated_at", table_name="web_upload")
    op.drop_index("uq_web_upload_open", table_name="web_upload")
    op.drop_table("web_upload")
    op.drop_index("ix_web_session_kind_principal_id", table_name="web_session")
    op.drop_index("ix_web_session_expires_at", table_name="web_session")
    op.drop_index("ix_web_session_token_hash", table_name="web_session")
    op.drop_table("web_session")
