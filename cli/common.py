"""What every command group of the `tradelane` command shares: where it prints, and a database
session whose domain errors become one clear line instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlmodel import Session

# No emoji codes: data such as a certificate's fingerprint (`…:AB:…`) would print as a picture.
console = Console(emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)

# Data is never markup. Partners choose file names, envelope values, key comments, AS2 headers;
# rich would read `[/red]` in one as a closing tag (and refuse it: a crashed command) or `[bold]`
# as a style. So data goes in f-strings through `escape`, whole lines of it print with
# markup=False, and tables take it through DataTable; only our own words carry markup.


class DataTable(Table):
    """A table whose string cells are data, printed as they are; style a cell with `styled`."""

    def add_row(self, *renderables: RenderableType | None, **options: Any) -> None:
        cells = [Text(cell) if isinstance(cell, str) else cell for cell in renderables]
        super().add_row(*cells, **options)


def safe(value: object) -> str:
    """Data for a line that carries markup: shown as it is, never read as markup."""
    return escape(str(value))


def styled(value: str, style: str) -> Text:
    """A table cell or printed value in a style, its text as it is."""
    return Text(value, style=style)


class UserError(Exception):
    """An error to show as one line, without a traceback."""


@contextmanager
def database() -> Iterator[Session]:
    """A committed database session; domain errors become one clear line and exit code 1."""
    from sqlalchemy.exc import IntegrityError

    from core.db import init_db, session_scope
    from core.endpoints.base import EndpointError
    from core.partners import PartnerError

    init_db()
    try:
        with session_scope() as session:
            yield session
    except (UserError, ValueError, EndpointError, PartnerError, LookupError) as exc:  # domain errors
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except IntegrityError as exc:  # a change the database refuses: one line, never a traceback
        err.print(f"[red]error:[/red] the database refused the change: {escape(str(exc.orig))}")
        raise typer.Exit(1) from None


def size_text(n: int) -> str:
    """Bytes as people write them: 50MiB, 2GiB, 1000 B."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n} B"


def print_json(value: Any) -> None:
    """Machine-readable output, on stdout whatever the console does."""
    import json

    print(json.dumps(value, indent=2))
