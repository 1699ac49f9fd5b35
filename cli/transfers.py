"""`tradelane transfers`, `audit` and `replay`: the run history and the audit trail (what they
print is cli/history.py's)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from cli.common import console, database, print_json
from cli.options import HOME, AccountOption, scoped_database


def _when(value: str | None, option: str) -> Any:
    from cli.history import parse_when

    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{option}: {exc}") from None


def transfers(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    wide: Annotated[bool, typer.Option(help="Every column, in full (run links are never cut).")] = False,
    state: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    flow: Annotated[str | None, typer.Option(help="Only this data flow.")] = None,
    partner: Annotated[str | None, typer.Option(help="Only files this partner sent.")] = None,
    dest: Annotated[str | None, typer.Option(help="Only to this destination endpoint.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Received at or after: 2026-12-01, 2026-12-01T14:30, or 90m, 2h, 7d ago."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Received before (same forms as --since).")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    connection: Annotated[
        str | None,
        typer.Option(help="Only files sent through this B2B connection (its name on this side, or id)."),
    ] = None,
    account: AccountOption = HOME,
) -> None:
    """Recent transfers: when, file, flow, destination, state, and a link to the Prefect run."""
    from cli.history import print_transfers, transfers_json
    from core import transfers as history
    from core.config import get_settings
    from core.endpoints import rows as endpoint_rows

    ui = get_settings().prefect_links_url  # PREFECT_PUBLIC_URL; None: no links
    start, end = _when(since, "--since"), _when(until, "--until")
    if connection is not None:
        _connection_transfers(connection, account, state, limit, as_json)
        return
    with scoped_database(account) as (session, scope):
        rows = history.recent(
            session,
            scope,
            limit=limit,
            state=state,
            flow=flow,
            partner=partner,
            dest=dest,
            since=start,
            until=end,
        )
        rows = history.scrubbed(rows, endpoint_rows.scrubber(session, scope))
    if as_json:
        print_json(transfers_json(rows, ui))
        return
    print_transfers(console, rows, ui, wide)


def _connection_transfers(ref: str, account: str, state: str | None, limit: int, as_json: bool) -> None:
    """`transfers --connection N`: what this account's side may see of the connection's files."""
    from core.b2b import history as b2b_history
    from core.b2b.caller import cli_caller

    with database() as session:
        rows = b2b_history.connection_history(
            session, cli_caller(session, account), ref, limit=limit, state=state
        )
    if as_json:
        print_json(rows)
        return
    for row in rows:
        said = row.get("outcome") or row.get("error") or ""
        if row["state"] == "waiting" and row.get("next_attempt_at"):
            said += f" (next try {row['next_attempt_at'][11:16]} UTC)"
        console.print(
            f"{row['id'] or '-':>6}  {row['sent_at'][:19]}  {row['file']}  {row['state']}  {said}",
            soft_wrap=True,
            markup=False,
        )


def audit(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    wide: Annotated[bool, typer.Option(help="Every column, in full.")] = False,
    partner: Annotated[
        str | None, typer.Option(help="What this partner did, and what was done to it.")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action or family: login, login.failed, upload, partner, ...")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="At or after: an ISO date/time, or 90m, 2h, 7d ago.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before (same forms as --since).")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 100,
    account: AccountOption = HOME,
) -> None:
    """The audit trail: logins and failures, uploads, downloads, deletes, configuration changes."""
    from cli.history import audit_json, audit_table
    from core import audit as trail

    start, end = _when(since, "--since"), _when(until, "--until")
    with scoped_database(account) as (session, scope):
        events = trail.events(
            session, scope, partner=partner, action=action, since=start, until=end, limit=limit
        )
    if as_json:
        print_json(audit_json(events))
        return
    out = Console(width=100_000, soft_wrap=True) if wide else console
    table, hint = audit_table(events, out.width, wide)
    out.print(table)
    if hint:
        out.print(hint, style="dim")


def replay(transfer_id: int, account: AccountOption = HOME) -> None:
    """Carry a finished transfer's file again through the same data flow (a waiting one: now)."""
    from core import transfers as history

    with scoped_database(account) as (session, scope):
        copy = history.replay(session, scope, transfer_id)
    if copy.id == transfer_id:  # it was waiting: the same transfer, due now
        console.print(f"transfer {transfer_id} was waiting; it is tried again now (no second copy is made)")
        return
    console.print(f"transfer {transfer_id} replayed as transfer {copy.id} (pending)")
