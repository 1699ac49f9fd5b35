"""`tradelane notify …`: notification channels (e-mail, webhooks) and the rules that use them.

Rules are kept as Prefect automations (named `tradelane notify rule <id>`, on the Automations page)
by the deployments' reconciler while `up` runs, within a few seconds of the command.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box

from cli.common import DataTable, console, print_json, safe, styled
from cli.options import HOME, AccountOption, scoped_database

notify_app = typer.Typer(help="Notifications: channels (e-mail, webhook) and rules.", no_args_is_help=True)
channel_app = typer.Typer(help="Where notifications go: e-mail addresses or a webhook.", no_args_is_help=True)
notify_app.add_typer(channel_app, name="channel")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@channel_app.command("add")
def channel_add(
    name: str,
    email: Annotated[str | None, typer.Option(help="E-mail addresses, comma-separated.")] = None,
    webhook: Annotated[str | None, typer.Option(help="A URL to POST each notification to.")] = None,
    secret: Annotated[
        str | None,
        typer.Option(help="Webhook: sign each body (X-Tradelane-Signature: sha256=<HMAC>) with this secret."),
    ] = None,
    format: Annotated[str, typer.Option(help="Webhook body: json, slack or teams.")] = "json",
    account: AccountOption = HOME,
) -> None:
    """Add a channel: --email ADDRESSES, or --webhook URL [--secret S] [--format json|slack|teams]."""
    from core.notify import channels

    with scoped_database(account) as (session, scope):
        row = channels.add(session, scope, name, email=email, webhook=webhook, secret=secret, format=format)
        kind = row.kind
    console.print(f"notification channel [bold]{safe(name)}[/bold] added ({kind})")


@channel_app.command("list")
def channel_list(account: AccountOption = HOME, as_json: JsonOption = False) -> None:
    """Channels, and whether their last send failed (and why)."""
    from core.notify import channels

    with scoped_database(account) as (session, scope):
        views = channels.listed(session, scope)
    if as_json:
        print_json([view.as_json() for view in views])
        return
    table = DataTable("name", "kind", "target", "state", "last error", box=box.SIMPLE_HEAD, pad_edge=False)
    for view in views:
        target = view.target + (f" ({view.format})" if view.kind == "webhook" else "")
        state = styled(f"failing ({view.failures})", "red") if view.failing else styled("ok", "green")
        error = (
            f"{view.last_error_at:%Y-%m-%d %H:%M} {view.last_error}"
            if view.failing and view.last_error_at
            else ""
        )
        table.add_row(view.name, view.kind, target, state, error)
    console.print(table)


@channel_app.command("test")
def channel_test(name: str, account: AccountOption = HOME) -> None:
    """Send a test notification through the channel now (one try)."""
    from core.notify import channels, messages, send

    with scoped_database(account) as (session, scope):
        channel = channels.require(session, scope, name)
        channel_id, account_name = channel.id or 0, scope.account_name
    try:
        send.deliver(channel_id, messages.test_notice(account_name, name), tries=1)
    except send.SendError as exc:
        console.print(f"[red]error:[/red] {safe(exc)}")
        raise typer.Exit(1) from None
    console.print(f"test notification sent through [bold]{safe(name)}[/bold]")


@channel_app.command("remove")
def channel_remove(name: str, account: AccountOption = HOME) -> None:
    """Remove a channel and the rules that use it."""
    from core.notify import channels

    with scoped_database(account) as (session, scope):
        channels.remove(session, scope, name)
    console.print(f"notification channel [bold]{safe(name)}[/bold] removed")


@notify_app.command("on")
def notify_on(
    what: Annotated[str, typer.Argument(help="failed, rejected, received or delivered.")],
    to: Annotated[str, typer.Option("--to", help="The channel to notify.")],
    partner: Annotated[str | None, typer.Option(help="Only this partner's files.")] = None,
    flow: Annotated[str | None, typer.Option(help="Only this data flow's files.")] = None,
    digest: Annotated[
        str | None, typer.Option(help="One message per window (10s, 15m, 1h) listing every file in it.")
    ] = None,
    account: AccountOption = HOME,
    as_json: JsonOption = False,
) -> None:
    """Notify a channel when a file is failed, rejected, received or delivered."""
    from core.notify import rules

    with scoped_database(account) as (session, scope):
        rule = rules.add(session, scope, what, to, partner=partner, flow=flow, digest=digest)
        rule_id = rule.id or 0
    if as_json:
        print_json({"id": rule_id, "automation": rules.automation_name(rule_id)})
        return
    console.print(
        f"rule {rule_id} added: kept as the Prefect automation "
        f"[bold]{safe(rules.automation_name(rule_id))}[/bold] within seconds while tradelane up runs"
    )


@notify_app.command("rules")
def notify_rules(account: AccountOption = HOME, as_json: JsonOption = False) -> None:
    """The rules: what, which channel, for which partner or data flow, digest."""
    from core.notify import rules

    with scoped_database(account) as (session, scope):
        views = rules.listed(session, scope)
    if as_json:
        print_json([view.as_json() for view in views])
        return
    table = DataTable("id", "on", "to", "partner", "flow", "digest", box=box.SIMPLE_HEAD, pad_edge=False)
    for view in views:
        digest = f"{view.digest_seconds}s" if view.digest_seconds else "-"
        table.add_row(str(view.id), view.on, view.channel, view.partner or "*", view.flow or "*", digest)
    console.print(table)


@notify_app.command("off")
def notify_off(rule_id: int, account: AccountOption = HOME) -> None:
    """Remove a rule (its automation goes within seconds)."""
    from core.notify import rules

    with scoped_database(account) as (session, scope):
        rules.remove(session, scope, rule_id)
    console.print(f"rule {rule_id} removed")
