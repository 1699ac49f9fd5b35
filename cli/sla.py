"""`tradelane sla …`: files expected from a partner by a time of day, and an alert when they are not.

The deployments' reconciler (under `up`, and in each `serve dispatcher`) checks each deadline
within seconds of it against the store (deployments/sla_watch.py).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.text import Text

from cli.common import DataTable, console, print_json, safe, styled
from cli.options import HOME, AccountOption, scoped_database

sla_app = typer.Typer(
    help="SLAs: files expected from a partner by a deadline; an alert through a channel when missed.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@sla_app.command("add")
def sla_add(
    name: str,
    partner: Annotated[str, typer.Option(help="The partner whose files are expected.")],
    by: Annotated[str, typer.Option("--by", help="The deadline, a local time of day: HH:MM[:SS].")],
    to: Annotated[str, typer.Option("--to", help="The notification channel told when it is missed.")],
    days: Annotated[str, typer.Option(help="Weekdays: mon-fri, mon,wed,fri, daily.")] = "mon-fri",
    timezone: Annotated[str, typer.Option(help="The deadline's time zone (IANA name).")] = "UTC",
    pattern: Annotated[str, typer.Option(help="Only files whose name matches this glob count.")] = "*",
    min_files: Annotated[int, typer.Option(help="Files expected between two deadlines.")] = 1,
    account: AccountOption = HOME,
) -> None:
    """Expect at least --min-files files (matching --pattern) from --partner by each deadline."""
    from core.notify import slas

    with scoped_database(account) as (session, scope):
        sla = slas.add(
            session, scope, name, partner=partner, by=by, days=days, channel=to,
            pattern=pattern, timezone=timezone, min_files=min_files,
        )  # fmt: skip
        summary = f"{sla.min_files} file(s) {sla.pattern} by {sla.by} {sla.timezone} on {sla.days}"
    console.print(f"SLA [bold]{safe(name)}[/bold] added: {safe(summary)}")


@sla_app.command("list")
def sla_list(account: AccountOption = HOME, as_json: JsonOption = False) -> None:
    """Each SLA, its last deadline checked (met or missed, and how many files) and its next one."""
    from core.models import utcnow
    from core.notify import slas

    with scoped_database(account) as (session, scope):
        views = slas.listed(session, scope, utcnow())
    if as_json:
        print_json([view.as_json() for view in views])
        return
    table = DataTable(
        "name", "partner", "expects", "by", "to", "last", "last deadline", "next deadline",
        box=box.SIMPLE_HEAD, pad_edge=False,
    )  # fmt: skip
    for view in views:
        last: str | Text
        if view.last_outcome is None:
            last = "-"
        else:
            color = "green" if view.last_outcome == "met" else "red"
            last = styled(f"{view.last_outcome} ({view.last_count}/{view.min_files})", color)
        table.add_row(
            view.name,
            view.partner,
            f"{view.min_files} x {view.pattern}",
            f"{view.by} {view.days} {view.timezone}",
            view.channel,
            last,
            f"{view.last_deadline:%Y-%m-%d %H:%M:%S} UTC" if view.last_deadline else "-",
            f"{view.next_deadline:%Y-%m-%d %H:%M:%S} UTC" if view.next_deadline else "-",
        )
    console.print(table)


@sla_app.command("remove")
def sla_remove(name: str, account: AccountOption = HOME) -> None:
    """Remove an SLA."""
    from core.notify import slas

    with scoped_database(account) as (session, scope):
        slas.remove(session, scope, name)
    console.print(f"SLA [bold]{safe(name)}[/bold] removed")
