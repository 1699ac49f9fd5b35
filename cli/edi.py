"""`tradelane edi`: try an edi-route rule table on a sample file, without a data flow or `up`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, err, print_json, safe

app = typer.Typer(help="X12 and EDIFACT: what an interchange's envelopes say.", no_args_is_help=True)


@app.command("route")
def route(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An X12 or EDIFACT file.")],
    rules: Annotated[
        str,
        typer.Option(
            help="The rule table, as the edi-route template takes it: JSON text, or @FILE holding it "
            '(e.g. \'[{"ST":"850","dest":"erp-orders"},{"UNH":"ORDERS","dest":"eu-orders"}]\').'
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {dest, envelope} (or {error, envelope}).")
    ] = False,
) -> None:
    """Read FILE's envelopes while streaming and print where the rule table sends it (exit 1 if refused)."""
    from core.transforms.edi_route import EdiRouteError, route_stream

    text = Path(rules[1:]).read_text() if rules.startswith("@") else rules
    try:
        with file.open("rb") as stream:
            result = route_stream(stream, text, file.name)
    except ValueError as exc:  # a bad rule table
        err.print(f"[red]error:[/red] {safe(exc)}")
        raise typer.Exit(2) from None
    except EdiRouteError as exc:
        if as_json:
            read = exc.envelope.as_dict() if exc.envelope is not None else None
            print_json({"error": exc.reason, "envelope": read})
        else:
            err.print(f"[red]refused:[/red] {safe(exc.reason)}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print_json({"dest": result.dest, "envelope": result.envelope.as_dict()})
        return
    envelope = result.envelope
    console.print(f"dest: {safe(result.dest)}", highlight=False)
    console.print(
        f"{envelope.standard}: {envelope.interchanges} interchange(s), {envelope.messages} "
        f"{'transaction set' if envelope.standard == 'x12' else 'message'}(s)",
        highlight=False,
        markup=False,
    )
    for combination in envelope.combinations:
        values = ", ".join(f"{k}={v}" for k, v in combination.values().items() if v is not None)
        console.print(f"  {safe(values)}: {combination.count} → rule {combination.rule}", highlight=False)
