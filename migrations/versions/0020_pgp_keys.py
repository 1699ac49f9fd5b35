"""PGP keyring: OpenPGP keys (partners' public keys, our key pairs) kept in the database

Revision ID: 0020
Revises: 0012
Create Date: 2026-12-05 05:00:00

The keys live here, not in a GnuPG home: each operation fills a throwaway home from these rows
(core/pgp/gnupg_home.py). Private keys are stored as Fernet tokens, like every secret.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0020"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pgpkey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_ids", sa.JSON(), nullable=False),
        sa.Column("algorithm", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("can_encrypt", sa.Boolean(), nullable=False),
        sa.Column("can_sign", sa.Boolean(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=True),
        sa.Column("key_created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name"),
        sa.UniqueConstraint("account_id", "fingerprint"),
    )
    with op.batch_alter_table("pgpkey", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pgpkey_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pgpkey_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_pgpkey_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_pgpkey_fingerprint"), ["fingerprint"], unique=False)


def downgrade() -> None:
    op.drop_table("pgpkey")
