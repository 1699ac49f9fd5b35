"""Peer uploads: files another instance pushes to us, resumable and idempotent (DESIGN-12 §5.5)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peer_upload",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("transfer_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("staged_path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("receipt_id", sa.Integer(), nullable=True),
        sa.Column("signed_receipt", sa.Text(), nullable=True),
        sa.Column("receipt_signature", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("receipt_key_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("resumes", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("completed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["connection_id"], ["connection.id"]),
        sa.ForeignKeyConstraint(["receipt_id"], ["receipt.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection_id", "transfer_key", "sha256"),
    )
    with op.batch_alter_table("peer_upload", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_peer_upload_uid"), ["uid"], unique=True)
        batch_op.create_index(batch_op.f("ix_peer_upload_connection_id"), ["connection_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("peer_upload", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_peer_upload_connection_id"))
        batch_op.drop_index(batch_op.f("ix_peer_upload_uid"))
    op.drop_table("peer_upload")
