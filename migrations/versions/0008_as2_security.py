"""AS2 security: unsigned inbound refused unless allowed, where async MDNs may go, replay digests

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 12:00:00

Existing profiles get the safe defaults: unsigned inbound messages refused (`allow_unsigned`
false), no MDN return URL and no MDN URL allow-list (the origin of the profile's URL applies).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("as2partner", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("allow_unsigned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("mdn_return_url", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("allow_mdn_urls", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("as2message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signed_digest", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_as2message_signed_digest"), ["signed_digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("as2message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_as2message_signed_digest"))
        batch_op.drop_column("signed_digest")
    with op.batch_alter_table("as2partner", schema=None) as batch_op:
        batch_op.drop_column("allow_mdn_urls")
        batch_op.drop_column("mdn_return_url")
        batch_op.drop_column("allow_unsigned")
