"""transfer.next_attempt_at and transfer.waits: the `waiting` state (a destination that said "not
now": the file is kept and carried again later, with backoff)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 08:00:00

`state` is a plain string column, so the new state needs no change to it.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transfer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("waits", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index(batch_op.f("ix_transfer_next_attempt_at"), ["next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("transfer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transfer_next_attempt_at"))
        batch_op.drop_column("waits")
        batch_op.drop_column("next_attempt_at")
