"""accounts as tenants: account users, login names unique on the instance, AS2 IDs too

* `accountuser`: the people who log in for an account (e-mail address, role, the partner's
  lifecycle columns).
* `partner.name` unique on the whole instance (`uq_partner_name`): partner names are login names.
  The per-account constraint stays (implied by this one); removed partners carry
  `<name>.removed.<id>` names, so existing stores, all in `home`, already hold it.
* `as2organization.as2_id` unique on the whole instance: `/as2/receive` routes by AS2-To alone.
* `receipt.user_id`: the account user who put a file in.

Before changing anything it checks the data the new rules need, and stops with a readable message
naming what to fix if a store written by hand breaks them. Nothing moves: every row already
belongs to `home`, and mailboxes stay under `home/`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

UTC_DATETIME = sqlmodel.sql.sqltypes.UTCDateTime()

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Tables whose rows must each belong to an account.
OWNED = ("partner", "endpoint", "dataflow", "receipt", "as2organization", "as2partner", "as2message")


def _check(connection: sa.Connection) -> None:
    problems: list[str] = []
    for table in OWNED:
        orphans = connection.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE account_id IS NULL")
        ).scalar()
        if orphans:
            problems.append(f"{orphans} row(s) of {table} belong to no account")
    for table, column in (("partner", "name"), ("as2organization", "as2_id")):
        taken = connection.execute(
            sa.text(f"SELECT {column} FROM {table} GROUP BY {column} HAVING count(*) > 1")
        ).scalars()
        problems += [f"{table} {column} {value!r} is used more than once" for value in taken]
    if problems:
        raise RuntimeError(
            "cannot make accounts tenants (revision 0010): "
            + "; ".join(problems)
            + " - login names and AS2 IDs must be unique on the instance; rename one and start again"
        )


def upgrade() -> None:
    _check(op.get_bind())
    op.create_table(
        "accountuser",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("locked_until", UTC_DATETIME, nullable=True),
        sa.Column("sessions_ended_at", UTC_DATETIME, nullable=True),
        sa.Column("removed_at", UTC_DATETIME, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_accountuser_uid", "accountuser", ["uid"], unique=True)
    op.create_index("ix_accountuser_email", "accountuser", ["email"], unique=True)
    op.create_index("ix_accountuser_account_id", "accountuser", ["account_id"])
    op.create_index("uq_partner_name", "partner", ["name"], unique=True)
    op.create_index("uq_as2organization_as2_id", "as2organization", ["as2_id"], unique=True)
    # A plain column (no foreign key): adding one would make SQLite rebuild `receipt`, which every
    # transfer references. Users are never deleted (removal renames them), so the id stays valid.
    op.add_column("receipt", sa.Column("user_id", sa.Integer(), nullable=True))
    op.create_index("ix_receipt_user_id", "receipt", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_receipt_user_id", table_name="receipt")
    op.drop_column("receipt", "user_id")  # SQLite 3.35+ drops a plain column in place
    op.drop_index("uq_as2organization_as2_id", table_name="as2organization")
    op.drop_index("uq_partner_name", table_name="partner")
    op.drop_index("ix_accountuser_account_id", table_name="accountuser")
    op.drop_index("ix_accountuser_email", table_name="accountuser")
    op.drop_index("ix_accountuser_uid", table_name="accountuser")
    op.drop_table("accountuser")
