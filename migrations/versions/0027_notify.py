"""Notification channels and rules

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 17:30:00

* `notifychannel`: an account's e-mail or webhook channel (`tradelane notify channel add`), its
  secret encrypted like every other, and its last send's outcome (`notify channel list`).
* `notifyrule`: `tradelane notify on …`, mirrored as a Prefect automation.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifychannel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("secrets", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("last_sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("last_error_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name"),
    )
    op.create_index(op.f("ix_notifychannel_account_id"), "notifychannel", ["account_id"])
    op.create_table(
        "notifyrule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("on", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=True),
        sa.Column("data_flow_id", sa.Integer(), nullable=True),
        sa.Column("digest_seconds", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["channel_id"], ["notifychannel.id"]),
        sa.ForeignKeyConstraint(["partner_id"], ["partner.id"]),
        sa.ForeignKeyConstraint(["data_flow_id"], ["dataflow.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_notifyrule_account_id"), "notifyrule", ["account_id"])
    op.create_index(op.f("ix_notifyrule_channel_id"), "notifyrule", ["channel_id"])


def downgrade() -> None:
    op.drop_table("notifyrule")
    op.drop_table("notifychannel")
