"""`tradelane flow ...`: data flows (source → validators → destination), their settings and runs."""

from __future__ import annotations

from typing import Annotated, cast

import typer

from cli.common import DataTable, UserError, console, print_json, safe, styled
from cli.options import HOME, AccountOption, scoped_database

flow_app = typer.Typer(help="Data flows: source → validators → destination.", no_args_is_help=True)


@flow_app.command("add")
def flow_add(
    name: str,
    source: Annotated[
        str, typer.Option(help="mailbox:PARTNER (its upload/ folder), or an endpoint name to poll.")
    ],
    dest: Annotated[
        str | None,
        typer.Option(
            help="An endpoint name, or mailbox:PARTNER (its download/). Not for a template that routes "
            "each file itself (edi-route)."
        ),
    ] = None,
    pattern: Annotated[str, typer.Option(help="File-name glob the flow takes.")] = "*",
    dest_path: Annotated[
        str, typer.Option(help="Destination path; {name} {stem} {suffix} {partner} {date} {time} expand.")
    ] = "{name}",
    validate: Annotated[
        list[str] | None,
        typer.Option(
            help="A check: json, xml, x12, edifact, max_size=10MiB, min_size=1, name=*.json, sha256=HEX."
        ),
    ] = None,
    retries: Annotated[int, typer.Option(help="Delivery retries (exponential backoff + jitter).")] = 5,
    retry_delay: Annotated[
        float, typer.Option(help="First retry delay in seconds; doubles each time.")
    ] = 2.0,
    replace: Annotated[bool, typer.Option(help="Overwrite a data flow of the same name.")] = False,
    every: Annotated[str | None, typer.Option(help="Polling sources: how often, e.g. 60s, 5m, 1h.")] = None,
    cron: Annotated[
        str | None, typer.Option(help="Polling sources: a cron schedule, e.g. '*/5 * * * *'.")
    ] = None,
    after_pull: Annotated[
        str, typer.Option(help="Polling sources: keep (remember it), delete, or archive:PATH at the source.")
    ] = "keep",
    source_folder: Annotated[str | None, typer.Option(help="Polling sources: folder on the source.")] = None,
    on_conflict: Annotated[
        str | None,
        typer.Option(
            help="When the name exists at the destination: rename (keep it, write 'name (2).ext'), "
            "overwrite, or fail. Default: rename (file, mailbox, sftp, ftp, s3, azure); "
            "not for http, email, as2."
        ),
    ] = None,
    template: Annotated[
        str, typer.Option(help="The flow template it runs (tradelane template list).")
    ] = "transfer",
    param: Annotated[
        list[str] | None,
        typer.Option(help="A template param, key=value (repeatable); JSON values too: rules='[...]'."),
    ] = None,
    account: AccountOption = HOME,
) -> None:
    """Create a data flow; it is served as a Prefect deployment within seconds."""
    from api.admin.flow_changes import add_flow
    from api.admin.schemas import FlowCreate
    from core import dataflows
    from core.models import Endpoint
    from core.validators import parse_cli_spec
    from tradelane import templates

    # What the flags say, parsed by the CLI's words first; then the one way a flow is added
    # (the admin API's and the console's too).
    with scoped_database(account) as (session, scope):
        new = FlowCreate(
            name=name,
            source=source,
            dest=dest,
            pattern=pattern,
            dest_path=dest_path,
            validators=[parse_cli_spec(v) for v in validate or []],
            retries=retries,
            retry_delay_seconds=retry_delay,
            every=dataflows.parse_interval(every) if every else None,
            cron=cron,
            after_pull=after_pull,
            source_folder=source_folder,
            on_conflict=on_conflict,
            template=template,
            params=templates.parse_param_options(param or []),
        )
        flow = add_flow(session, scope, new, replace=replace)
        shown = session.get(Endpoint, flow.dest_endpoint_id)
        dest = shown.name if shown else dest
    via = "" if template == templates.DEFAULT else f" (template {template})"
    console.print(f"data flow [bold]{safe(name)}[/bold] added: {safe(source)} → {safe(dest)}{safe(via)}")


@flow_app.command("list")
def flow_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    account: AccountOption = HOME,
) -> None:
    """List data flows."""
    from api.admin.schemas import FlowPublic
    from core import dataflows

    with scoped_database(account) as (session, scope):
        # One shape for `--json` and the admin API's answers.
        rows = [FlowPublic.of(session, f).model_dump(mode="json") for f in dataflows.list_all(session, scope)]
    if as_json:
        print_json(rows)
        return
    table = DataTable(
        "name",
        "template",
        "source",
        "pattern",
        "when",
        "dest",
        "path",
        "on conflict",
        "checks",
        "retries",
        "enabled",
    )
    for r in rows:
        checks = ", ".join(v["type"] for v in r["validators"]) or "-"
        table.add_row(
            r["name"],
            r["template"],
            r["source"],
            r["pattern"],
            r["schedule"],
            r["dest"],
            r["dest_path"],
            r["on_conflict"],
            checks,
            str(r["retries"]),
            "yes" if r["enabled"] else styled("no", "yellow"),
        )
    console.print(table)


@flow_app.command("run")
def flow_run_now(name: str, account: AccountOption = HOME) -> None:
    """Poll a polling data flow's source now (needs `tradelane up`)."""
    from cli.supervisor import apply_prefect_environment
    from core import dataflows
    from core.config import get_settings

    with scoped_database(account) as (session, scope):
        flow = dataflows.require(session, scope, name)
        if not dataflows.polls(flow):
            raise UserError(f"{name} starts when files are uploaded; only polling flows can be run")
    apply_prefect_environment(get_settings())
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    # Called from sync code, Prefect's run_deployment runs to completion itself (no event loop needed)
    # and returns the flow run (its type also allows the coroutine an async caller gets).
    from deployments.naming import poll_deployment, tags

    deployment, run_tags = (
        poll_deployment(name, scope.account_name),
        [*tags(name, scope.account_name), "on-demand"],
    )
    run = cast(FlowRun, run_deployment(deployment, timeout=0, tags=run_tags))
    from core.links import prefect_run_url

    link = prefect_run_url(str(run.id))
    console.print(
        f"poll of [bold]{safe(name)}[/bold] started"
        + (f": {safe(link)}" if link else f" (flow run {run.id})")
    )


@flow_app.command("set")
def flow_set(
    name: str,
    pattern: Annotated[str | None, typer.Option(help="File-name glob the flow takes.")] = None,
    dest: Annotated[str | None, typer.Option(help="An endpoint name, or mailbox:PARTNER.")] = None,
    dest_path: Annotated[str | None, typer.Option(help="Destination path template.")] = None,
    validate: Annotated[
        list[str] | None, typer.Option(help="A check (repeatable; replaces the flow's checks).")
    ] = None,
    no_validate: Annotated[bool, typer.Option("--no-validate", help="Remove every check.")] = False,
    retries: Annotated[int | None, typer.Option(help="Delivery retries.")] = None,
    retry_delay: Annotated[float | None, typer.Option(help="First retry delay in seconds.")] = None,
    enable: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
    on_conflict: Annotated[
        str | None,
        typer.Option(help="A name taken at the destination: rename, overwrite, fail or default."),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(help="Run another flow template; its params are then only the --param given."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Set a template param, key=value (repeatable); the others stay."),
    ] = None,
    no_params: Annotated[
        bool, typer.Option("--no-params", help="Clear the params (the template's defaults apply).")
    ] = False,
    account: AccountOption = HOME,
) -> None:
    """Change some settings of a data flow; the others stay as they are."""
    from api.admin.flow_changes import update_flow
    from api.admin.schemas import FlowUpdate
    from core.validators import parse_cli_spec
    from tradelane import templates

    if validate and no_validate:
        raise typer.BadParameter("give --validate or --no-validate, not both")
    if param and no_params:
        raise typer.BadParameter("give --param or --no-params, not both")
    with scoped_database(account) as (session, scope):
        change = FlowUpdate(
            pattern=pattern,
            dest=dest,
            dest_path=dest_path,
            validators=[] if no_validate else [parse_cli_spec(v) for v in validate] if validate else None,
            retries=retries,
            retry_delay_seconds=retry_delay,
            enabled=enable,
            on_conflict=on_conflict,
            template=template,
            params=templates.parse_param_options(param or []) or None,
            clear_params=no_params,
        )
        said = update_flow(session, scope, name, change)  # the admin API's and the console's way too
    console.print(
        f"data flow [bold]{safe(name)}[/bold]: " + (safe("; ".join(said)) if said else "nothing changed")
    )


@flow_app.command("remove")
def flow_remove(
    name: str,
    force: Annotated[
        bool, typer.Option(help="Remove it even with transfers pending or running (they are marked failed).")
    ] = False,
    account: AccountOption = HOME,
) -> None:
    """Remove a data flow; its transfer history stays."""
    from core import dataflows

    with scoped_database(account) as (session, scope):
        removal = dataflows.remove(session, scope, name, force=force)
    console.print(f"data flow [bold]{safe(name)}[/bold] removed")
    if removal.cancelled:
        console.print(f"{removal.cancelled} pending or running transfer(s) marked failed")


@flow_app.command("enable")
def flow_enable(name: str, account: AccountOption = HOME) -> None:
    """Start carrying files again (pending ones go out)."""
    from core import dataflows

    with scoped_database(account) as (session, scope):
        dataflows.set_enabled(session, scope, name, True)
    console.print(f"data flow [bold]{safe(name)}[/bold] enabled")


@flow_app.command("disable")
def flow_disable(name: str, account: AccountOption = HOME) -> None:
    """Stop taking new files into this data flow."""
    from core import dataflows

    with scoped_database(account) as (session, scope):
        dataflows.set_enabled(session, scope, name, False)
    console.print(f"data flow [bold]{safe(name)}[/bold] disabled")
