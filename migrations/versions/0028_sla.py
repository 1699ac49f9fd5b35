"""SLAs: files expected from a partner by a deadline

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 18:30:00

* `sla`: `tradelane sla add`, with the last deadline checked and its outcome (`sla list`).
* `partner.contact_emails`, `partner.tell_rejected`: `partner set --contact-email --tell-rejected`.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sla",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("pattern", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("days", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("min_files", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_deadline", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_outcome", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("last_count", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["partner_id"], ["partner.id"]),
        sa.ForeignKeyConstraint(["channel_id"], ["notifychannel.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name"),
    )
    op.create_index(op.f("ix_sla_account_id"), "sla", ["account_id"])
    op.create_index(op.f("ix_sla_channel_id"), "sla", ["channel_id"])
    with op.batch_alter_table("partner") as batch:
        batch.add_column(sa.Column("contact_emails", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column("tell_rejected", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("partner") as batch:
        batch.drop_column("tell_rejected")
        batch.drop_column("contact_emails")
    op.drop_table("sla")
