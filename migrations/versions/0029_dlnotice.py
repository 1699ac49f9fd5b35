"""Partner notices of files waiting in download/

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05 21:00:00

* `partner.tell_downloads`: `partner set --tell-downloads`, the partner's contacts are told when a
  data flow delivers a file into its `download/`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("partner") as batch:
        batch.add_column(sa.Column("tell_downloads", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("partner") as batch:
        batch.drop_column("tell_downloads")
