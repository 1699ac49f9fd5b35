"""Flow templates: the template a data flow runs and its params

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 07:45:00

Every existing data flow keeps running today's flow: `transfer`, with no params.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataflow") as batch:
        batch.add_column(sa.Column("template", sa.String(), nullable=False, server_default="transfer"))
        batch.add_column(sa.Column("params", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("dataflow") as batch:
        batch.drop_column("params")
        batch.drop_column("template")
