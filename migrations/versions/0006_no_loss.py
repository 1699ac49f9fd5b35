"""receipt.visible_path (bytes kept per receipt, the partner's link beside them) and
dataflow.on_conflict (what a delivery does with a name that exists)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing receipts keep their storage_path (the partner's path or the old archive): the code
    # still reads and archives that layout, so no file has to move here.
    with op.batch_alter_table("receipt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visible_path", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    # NULL: the destination type's default (rename for folders, servers and object stores).
    with op.batch_alter_table("dataflow", schema=None) as batch_op:
        batch_op.add_column(sa.Column("on_conflict", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataflow", schema=None) as batch_op:
        batch_op.drop_column("on_conflict")
    with op.batch_alter_table("receipt", schema=None) as batch_op:
        batch_op.drop_column("visible_path")
