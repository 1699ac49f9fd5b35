"""Peers: the other instance of a cross-instance connection (URL and keys), and the replay guard

`peer` holds one row per cross-instance connection (DESIGN-12 §5.1); `peer_nonce` the nonces of
signed peer requests while their signatures could still be accepted (§5.3).

`peer.connection_id` becomes a foreign key to `connection.id` when this revision is chained after
the connections migration (the table does not exist on this branch's parent, 0009).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("base_url", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("their_connection_uid", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("their_account", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("their_key_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("their_public_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("our_key_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("our_public_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("our_private_key", sa.Text(), nullable=False),
        sa.Column("reachable", sa.Boolean(), nullable=False),
        sa.Column("unreachable_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("checked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("next_check_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revoke_to_send", sa.Boolean(), nullable=False),
        sa.Column("notice_attempts", sa.Integer(), nullable=False),
        sa.Column("next_notice_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("view_allowed_seen", sa.Boolean(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("peer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_peer_connection_id"), ["connection_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_peer_their_key_id"), ["their_key_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_peer_our_key_id"), ["our_key_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_peer_next_check_at"), ["next_check_at"], unique=False)

    op.create_table(
        "peer_nonce",
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("nonce", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("seen_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "nonce"),
    )
    with op.batch_alter_table("peer_nonce", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_peer_nonce_seen_at"), ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("peer_nonce", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_peer_nonce_seen_at"))
    op.drop_table("peer_nonce")
    with op.batch_alter_table("peer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_peer_next_check_at"))
        batch_op.drop_index(batch_op.f("ix_peer_our_key_id"))
        batch_op.drop_index(batch_op.f("ix_peer_their_key_id"))
        batch_op.drop_index(batch_op.f("ix_peer_connection_id"))
    op.drop_table("peer")
