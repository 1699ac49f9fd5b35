"""Per-partner and per-endpoint concurrency

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05 14:30:00

* `partner.max_concurrent`, `endpoint.max_concurrent` (nullable: unlimited): the files carried at
  once for that partner or to/from that endpoint, kept as Prefect global concurrency limits named
  `partner:<account>/<name>` and `endpoint:<account>/<name>` (deployments/limits.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

TABLES = ("partner", "endpoint")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("max_concurrent", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("max_concurrent")
