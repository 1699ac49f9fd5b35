"""Options every config command shares: `--account` (`TRADELANE_ACCOUNT`), and the database
session scoped to that account.

The CLI is the instance operator: `--account` selects the account a command acts in, it does not
authenticate (tenancy is enforced for logins: REST, SFTP, FTP). Objects of other accounts are not
found by any command, by name or by id.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from sqlmodel import Session

from cli.common import database
from core.tenancy import Scope

HOME = "home"

AccountOption = Annotated[
    str,
    typer.Option(
        "--account",
        envvar="TRADELANE_ACCOUNT",
        help="The account (tenant) to act in (also TRADELANE_ACCOUNT).",
        show_default=True,
    ),
]


@contextmanager
def scoped_database(account: str) -> Iterator[tuple[Session, Scope]]:
    """`database()`, with the scope of `account` (an unknown account is one clear error line)."""
    from core.tenancy import scope_for_cli

    with database() as session:
        yield session, scope_for_cli(session, account)
