"""B2B connections on one instance: the connection table, outbox receipts, the landing data flows

`connection` holds one row per pairing of two accounts (its invitation token only as a SHA-256);
`receipt.connection_id` / `receipt.held` mark a file put into a connection's outbox (held while the
connection is pending); `dataflow.source_connection_id` marks the hidden data flow `b2b:<id>` that
carries them; `transfer.error_kind` is what the sender is told instead of the receiver's error;
`account.updated_at` is touched to serialise naming a connection in one account.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NAMED = sa.text("state IN ('pending', 'active', 'revoked')")
STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "connection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", STR(), nullable=False),
        sa.Column("direction", STR(), nullable=False),
        sa.Column("state", STR(), nullable=False),
        sa.Column("sender_account_id", sa.Integer(), nullable=True),
        sa.Column("sender_name", STR(), nullable=True),
        sa.Column("outbox_name", STR(), nullable=True),
        sa.Column("receiver_account_id", sa.Integer(), nullable=True),
        sa.Column("receiver_name", STR(), nullable=True),
        sa.Column("dest_endpoint_id", sa.Integer(), nullable=True),
        sa.Column("dest_dir", STR(), nullable=True),
        sa.Column("allow_sender_view", sa.Boolean(), nullable=False),
        sa.Column("invite_email", STR(), nullable=True),
        sa.Column("token_hash", STR(), nullable=True),
        sa.Column("token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("token_used_at", sa.DateTime(), nullable=True),
        sa.Column("signup_account_id", sa.Integer(), nullable=True),
        sa.Column("data_flow_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", STR(), nullable=True),
        sa.Column("accepted_at", sa.DateTime(), nullable=True),
        sa.Column("accepted_by", STR(), nullable=True),
        sa.Column("declined_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_by", STR(), nullable=True),
        sa.Column("revoked_side", STR(), nullable=True),
        sa.Column("expired_at", sa.DateTime(), nullable=True),
        sa.Column("view_changed_at", sa.DateTime(), nullable=True),
        sa.Column("view_changed_by", STR(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["sender_account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["receiver_account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["dest_endpoint_id"], ["endpoint.id"]),
        sa.ForeignKeyConstraint(["signup_account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_connection_uid", "connection", ["uid"], unique=True)
    op.create_index("ix_connection_state", "connection", ["state"])
    op.create_index("ix_connection_sender_account_id", "connection", ["sender_account_id"])
    op.create_index("ix_connection_receiver_account_id", "connection", ["receiver_account_id"])
    for name, columns in (
        ("uq_connection_sender_outbox_name", ["sender_account_id", "outbox_name"]),
        ("uq_connection_sender_sender_name", ["sender_account_id", "sender_name"]),
        ("uq_connection_receiver_receiver_name", ["receiver_account_id", "receiver_name"]),
    ):
        op.create_index(name, "connection", columns, unique=True, sqlite_where=NAMED, postgresql_where=NAMED)
    # Plain ADD COLUMN (with an inline REFERENCES, NULL by default): no table is rebuilt, so a store
    # full of receipts and transfers upgrades in place (a rebuild drops tables others reference).
    _add_reference("receipt", "connection_id")
    op.add_column("receipt", sa.Column("held", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_receipt_connection_id", "receipt", ["connection_id"])
    op.create_index("ix_receipt_held", "receipt", ["held"])
    _add_reference("dataflow", "source_connection_id")
    op.create_index("ix_dataflow_source_connection_id", "dataflow", ["source_connection_id"])
    op.add_column("transfer", sa.Column("error_kind", STR(), nullable=True))
    op.add_column("account", sa.Column("updated_at", sa.DateTime(), nullable=True))


def _add_reference(table: str, column: str) -> None:
    """A nullable column referencing connection.id, added in place (SQLite: ALTER TABLE … REFERENCES,
    which Alembic will only do by rebuilding the table)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER REFERENCES connection (id)")
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), sa.ForeignKey("connection.id"), nullable=True))


def downgrade() -> None:
    # Dropping a column that holds a REFERENCES rebuilds its table on SQLite (migrations/env.py runs
    # with foreign keys off for that, and checks them after).
    op.drop_column("account", "updated_at")
    op.drop_column("transfer", "error_kind")
    op.drop_index("ix_dataflow_source_connection_id", table_name="dataflow")
    with op.batch_alter_table("dataflow", schema=None) as batch_op:
        batch_op.drop_column("source_connection_id")
    op.drop_index("ix_receipt_held", table_name="receipt")
    op.drop_index("ix_receipt_connection_id", table_name="receipt")
    with op.batch_alter_table("receipt", schema=None) as batch_op:
        batch_op.drop_column("held")
        batch_op.drop_column("connection_id")
    op.drop_table("connection")
