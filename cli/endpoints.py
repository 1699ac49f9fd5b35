"""`tradelane endpoint ...`: places files come from or go to. Their flags, checks, listing and JSON
Schema all come from each type's settings and secrets models (cli/endpoint_flags.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from cli.common import DataTable, UserError, console, err, print_json, safe
from cli.endpoint_flags import (
    EndpointFlagsCommand,
    FlagError,
    defaults_for_add,
    describe,
    settings_from_flags,
)
from cli.options import HOME, AccountOption, scoped_database

if TYPE_CHECKING:
    from core.endpoints.base import Endpoint
    from core.endpoints.settings import EndpointSecrets, EndpointSettings

endpoint_app = typer.Typer(help="Places files come from or go to.", no_args_is_help=True)


def _given(ctx: typer.Context, type_: str) -> tuple[type[Endpoint], dict[str, Any], dict[str, Any]]:
    """The endpoint class of `type_` and the (config, secrets) its flags give."""
    from core.endpoints.base import ConfigError
    from core.endpoints.registry import endpoint_class, user_types

    try:
        cls = endpoint_class(type_)
        if cls.internal:
            raise ConfigError(type_)
    except ConfigError:
        raise typer.BadParameter(f"unknown --type {type_!r}; known: {', '.join(user_types())}") from None
    try:
        config, secrets = settings_from_flags(
            cls, ctx.meta["endpoint_flags"], ctx.meta["endpoint_flags_from_env"]
        )
    except FlagError as exc:
        raise typer.BadParameter(str(exc)) from None
    return cls, config, secrets


def _parsed(
    cls: type[Endpoint], config: dict[str, Any], secrets: dict[str, Any]
) -> tuple[EndpointSettings, EndpointSecrets]:
    """Both models, or one line per problem naming the flags (exit 1)."""
    from core.endpoints.settings import SettingsError

    try:
        return cls.parse(config, secrets)
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {escape(describe(exc, cls))}", highlight=False)
        raise typer.Exit(1) from None


@endpoint_app.command("add", cls=EndpointFlagsCommand)
def endpoint_add(
    ctx: typer.Context,
    name: str,
    type_: Annotated[str, typer.Option("--type", help="The endpoint's type.")],
    accept_host_key: Annotated[
        bool, typer.Option(help="sftp: pin the key the server offers now without asking.")
    ] = False,
    replace: Annotated[bool, typer.Option(help="Overwrite an endpoint of the same name.")] = False,
    max_concurrent: Annotated[
        str | None,
        typer.Option(help="Files carried to or from it at once on every worker; 0 or 'none': unlimited."),
    ] = None,
    account: AccountOption = HOME,
) -> None:
    """Store an endpoint (credentials encrypted at rest). Its flags are its type's settings: see
    `tradelane endpoint schema TYPE`."""
    from core import concurrency_limits
    from core.endpoints import rows as endpoint_rows
    from core.endpoints.settings import SettingsError

    cls, config, secrets = _given(ctx, type_)
    defaults_for_add(cls, config, secrets)
    if type_ == "sftp" and "host_key" not in config and config.get("host"):
        try:
            cls.parse(config, secrets)
        except SettingsError as exc:
            if any(p.kind != "missing" or p.loc != ("host_key",) for p in exc.problems):
                _parsed(cls, config, secrets)
        config["host_key"] = confirm_host_key(
            str(config["host"]), int(config.get("port") or 22), accept_host_key
        )
    try:  # refused before anything is stored
        limit = concurrency_limits.parse(max_concurrent)
    except concurrency_limits.BadLimit as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-concurrent") from None
    settings, secret_model = _parsed(cls, config, secrets)
    with scoped_database(account) as (session, scope):
        endpoint_rows.add(session, scope, name, type_, settings, secret_model, replace=replace)
        if limit is not None:
            concurrency_limits.set_endpoint(session, scope, name, limit)
    console.print(f"endpoint [bold]{safe(name)}[/bold] ({type_}) added")


@endpoint_app.command("set", cls=EndpointFlagsCommand)
def endpoint_set(
    ctx: typer.Context,
    name: str,
    unset: Annotated[
        list[str] | None, typer.Option(help="A setting or secret to take back to its default (repeatable).")
    ] = None,
    max_concurrent: Annotated[
        str | None,
        typer.Option(help="Files carried to or from it at once on every worker; 0 or 'none': unlimited."),
    ] = None,
    account: AccountOption = HOME,
) -> None:
    """Change some settings or secrets of an endpoint (the same flags as `endpoint add`); the others
    stay as they are. A repeatable flag replaces the whole list."""
    from core import concurrency_limits
    from core.endpoints import rows as endpoint_rows
    from core.endpoints.settings import SettingsError

    with scoped_database(account) as (session, scope):
        row = endpoint_rows.get(session, scope, name)
        if row is None or row.removed_at is not None or row.type in ("mailbox", "peer"):
            raise UserError(f"no endpoint named {name!r}")
        cls, config, secrets = _given(ctx, row.type)
        try:
            changed = endpoint_rows.set_settings(session, scope, name, config, secrets, unset or [])
        except SettingsError as exc:
            raise UserError(describe(exc, cls)) from None
        if max_concurrent is not None and concurrency_limits.set_endpoint(
            session, scope, name, max_concurrent
        ):
            changed.append(f"max_concurrent ({concurrency_limits.describe(row.max_concurrent)})")
    console.print(
        f"endpoint [bold]{safe(name)}[/bold]: "
        + (f"changed {safe(', '.join(changed))}" if changed else "nothing changed")
    )


def confirm_host_key(host: str, port: int, accept: bool) -> str:
    """First contact: show the server's host key fingerprint and pin it once the operator agrees."""
    from core.endpoints.base import EndpointError
    from core.endpoints.hostkeys import fetch_host_key, fingerprint

    try:
        offered = fetch_host_key(host, port)
    except EndpointError as exc:
        err.print(f"[red]error:[/red] could not read the host key of {safe(host)}:{port}: {safe(exc)}")
        raise typer.Exit(1) from None
    console.print(
        f"{safe(host)}:{port} offers host key {safe(offered.split()[0])} {safe(fingerprint(offered))}"
    )
    if not accept and not typer.confirm("Pin this key for the endpoint?", default=False):
        err.print("not pinned; nothing stored (pass --host-key 'TYPE BASE64' to pin a known key)")
        raise typer.Exit(1)
    return offered


@endpoint_app.command("list")
def endpoint_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    account: AccountOption = HOME,
) -> None:
    """List endpoints: their settings, and which secrets are set (never their values)."""
    from api.admin.schemas import EndpointPublic
    from core.endpoints import rows as endpoint_rows

    with scoped_database(account) as (session, scope):
        # One shape for `--json` and the admin API's answers.
        rows = [EndpointPublic.of(e).model_dump(mode="json") for e in endpoint_rows.list_all(session, scope)]
    if as_json:
        print_json(rows)
        return
    table = DataTable("name", "type", "config", "secrets", "at once")
    for row in rows:
        config = "  ".join(f"{k}={v}" for k, v in row["config"].items())
        at_once = str(row["max_concurrent"] or "unlimited")
        table.add_row(row["name"], row["type"], config, ", ".join(row["secrets"]) or "-", at_once)
    console.print(table)


@endpoint_app.command("schema")
def endpoint_schema(
    type_: Annotated[
        str | None, typer.Argument(metavar="[TYPE]", help="One type (default: every type).")
    ] = None,
) -> None:
    """Print the JSON Schema of an endpoint type's settings and secrets (what `apply` takes, and what
    a form is made from); secrets are marked writeOnly."""
    from core.endpoints.base import ConfigError
    from core.endpoints.registry import endpoint_class, user_types
    from core.endpoints.settings import json_schema

    def schema_of(scheme: str) -> dict[str, Any]:
        cls = endpoint_class(scheme)
        return json_schema(scheme, cls.settings_model, cls.secrets_model)

    if type_ is not None:
        try:
            if endpoint_class(type_).internal:
                raise ConfigError(type_)
        except ConfigError:
            raise typer.BadParameter(f"unknown type {type_!r}; known: {', '.join(user_types())}") from None
        print_json(schema_of(type_))
        return
    print_json(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "endpoint",
            "oneOf": [schema_of(scheme) for scheme in user_types()],
        }
    )


@endpoint_app.command("test")
def endpoint_test(name: str, account: AccountOption = HOME) -> None:
    """Connect and list: says clearly what failed (DNS, refused, authentication, TLS, host key, ...)."""
    from core.endpoints import probe

    with scoped_database(account) as (session, scope):
        row = probe.probe_named(session, scope, name)
    with console.status(f"testing {name}…"):
        result = probe.probe(row)
    with scoped_database(account) as (session, scope):
        probe.record(session, scope, result)
    if not result.ok:
        err.print(f"[red]✗ {safe(name)}[/red]: {safe(result.kind)}: {safe(result.message)}")
        raise typer.Exit(1)
    console.print(f"[green]✓ {safe(name)}[/green] reachable ({safe(result.uri)})")


@endpoint_app.command("remove")
def endpoint_remove(
    name: str,
    force: Annotated[bool, typer.Option(help="Disable the data flows that use it, and remove it.")] = False,
    account: AccountOption = HOME,
) -> None:
    """Delete an endpoint; refused while data flows use it (named), unless --force."""
    from core.endpoints import rows as endpoint_rows

    with scoped_database(account) as (session, scope):
        disabled = endpoint_rows.remove(session, scope, name, force=force)
    console.print(f"endpoint [bold]{safe(name)}[/bold] removed")
    if disabled:
        console.print(f"data flows disabled: {safe(', '.join(disabled))}")
