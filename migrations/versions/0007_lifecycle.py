"""lifecycle: partner email/lock/session end/removal, removed endpoints and flows, the login ledger

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

UTC_DATETIME = sqlmodel.sql.sqltypes.UTCDateTime()

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("partner", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("locked_until", UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column("sessions_ended_at", UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column("removed_at", UTC_DATETIME, nullable=True))
    with op.batch_alter_table("endpoint", schema=None) as batch_op:
        batch_op.add_column(sa.Column("removed_at", UTC_DATETIME, nullable=True))
    with op.batch_alter_table("dataflow", schema=None) as batch_op:
        batch_op.add_column(sa.Column("removed_at", UTC_DATETIME, nullable=True))
    # Partners removed before this revision were renamed "<name>.removed.<id>" and disabled.
    op.execute("UPDATE partner SET removed_at = created_at WHERE enabled = false AND name LIKE '%.removed.%'")
    op.create_table(
        "loginfailure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("protocol", sa.String(), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_loginfailure_at", "loginfailure", ["at"])
    op.create_index("ix_loginfailure_address_at", "loginfailure", ["address", "at"])
    op.create_index("ix_loginfailure_username_at", "loginfailure", ["username", "at"])
    op.create_table(
        "addressban",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("until", UTC_DATETIME, nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_addressban_address_until", "addressban", ["address", "until"])


def downgrade() -> None:
    op.drop_index("ix_addressban_address_until", table_name="addressban")
    op.drop_table("addressban")
    op.drop_index("ix_loginfailure_username_at", table_name="loginfailure")
    op.drop_index("ix_loginfailure_address_at", table_name="loginfailure")
    op.drop_index("ix_loginfailure_at", table_name="loginfailure")
    op.drop_table("loginfailure")
    with op.batch_alter_table("dataflow", schema=None) as batch_op:
        batch_op.drop_column("removed_at")
    with op.batch_alter_table("endpoint", schema=None) as batch_op:
        batch_op.drop_column("removed_at")
    with op.batch_alter_table("partner", schema=None) as batch_op:
        batch_op.drop_column("removed_at")
        batch_op.drop_column("sessions_ended_at")
        batch_op.drop_column("locked_until")
        batch_op.drop_column("email")
