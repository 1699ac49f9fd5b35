"""The `tradelane` command: `up`, `apply`, and the command groups, each in its own module
(cli/partners.py, cli/endpoints.py, cli/flows.py, cli/transfers.py, cli/as2.py, cli/edi.py, cli/pgp.py,
cli/accounts.py, cli/templates.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import apply as apply_cmd
from cli import as2 as as2_cli
from cli import edi as edi_cli
from cli import pgp as pgp_cli
from cli import transfers as history
from cli import worker as worker_cli
from cli.accounts import account_app
from cli.common import console, database, err, safe
from cli.connect import connect_app
from cli.endpoints import endpoint_app
from cli.flows import flow_app
from cli.notify import notify_app
from cli.partners import partner_app
from cli.serve import serve_app
from cli.sla import sla_app
from cli.templates import template_app

app = typer.Typer(help="tradelane: a self-hosted B2B file-exchange hub.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(partner_app, name="partner")
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(flow_app, name="flow")
app.add_typer(as2_cli.app, name="as2")
app.add_typer(edi_cli.app, name="edi")
app.add_typer(pgp_cli.app, name="pgp")
app.add_typer(connect_app, name="connect")
app.add_typer(template_app, name="template")
app.add_typer(serve_app, name="serve")
app.add_typer(notify_app, name="notify")
app.add_typer(sla_app, name="sla")


@app.command()
def up() -> None:
    """Run it all here: Prefect (unless PREFECT_API_URL is set), runner, API, mailboxes, dispatcher."""
    import logging

    from cli.supervisor import Supervisor
    from core.b2b.mail import clear_password_warning
    from core.redact import install_log_scrubber

    install_log_scrubber()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if warning := clear_password_warning():
        logging.getLogger("tradelane.mail").warning(warning)
    try:
        Supervisor(echo=lambda line: console.print(line, soft_wrap=True, markup=False)).run()
    except RuntimeError as exc:
        err.print(f"[red]error:[/red] {safe(exc)}")
        raise typer.Exit(1) from None


app.command()(history.transfers)
app.command()(history.audit)
app.command()(history.replay)
app.command()(worker_cli.worker)


@app.command("apply")
def apply(
    file: Annotated[
        Path, typer.Option("-f", "--file", exists=True, dir_okay=False, help="YAML declarations.")
    ],
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            envvar="TRADELANE_ACCOUNT",
            help="The account to apply in (the file's account: key, if any, must agree); default home.",
        ),
    ] = None,
) -> None:
    """Create or update partners, endpoints and data flows declared in a YAML file (idempotent)."""
    with database() as session:
        changes = apply_cmd.apply_file(session, file, progress=console, account=account)
    for line in changes:
        console.print(line, markup=False)  # names and values from the file, as they are


def main() -> None:
    """The `tradelane` command: everything it and its children write into the home is private."""
    from pydantic import ValidationError
    from rich.markup import escape

    from core.config import get_settings
    from core.permissions import make_private

    try:
        settings = get_settings()
    except ValidationError as exc:  # a setting that cannot be used: said by its name, nothing starts
        for problem in exc.errors():
            name = "TRADELANE_" + "_".join(str(part) for part in problem["loc"]).upper()
            message = problem["msg"].removeprefix("Value error, ")
            err.print(f"[red]error:[/red] {escape(name)}: {escape(message)}")
        raise SystemExit(1) from None
    make_private(settings.home_dir)
    app()


if __name__ == "__main__":
    main()
