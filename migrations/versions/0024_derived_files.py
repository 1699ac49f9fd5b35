"""Derived files: the chain a template's steps made from a receipt, and the EDI envelope read

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 07:40:00

`transfer.derived` lists each derived file ({step, name, size, sha256}, last one delivered);
`transfer.envelope` holds the envelope values edi-route routed on. Both JSON, both empty for a
plain transfer.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transfer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("derived", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("envelope", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transfer", schema=None) as batch_op:
        batch_op.drop_column("envelope")
        batch_op.drop_column("derived")
