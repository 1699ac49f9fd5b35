"""`tradelane template ...`: the flow templates data flows can run (tradelane/templates.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cli.common import DataTable, console, err, print_json, safe, styled

template_app = typer.Typer(help="Flow templates: what a data flow runs.", no_args_is_help=True)


@template_app.command("list")
def template_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the templates: built-in and installed; a package that fails to load is named with its error."""
    from tradelane import templates

    good, broken = templates.load_all()
    rows: list[dict[str, Any]] = [
        {
            "name": t.name,
            "source": t.source,
            "description": t.description.splitlines()[0] if t.description else "",
            "error": None,
        }
        for t in good
    ]
    rows += [{"name": b.name, "source": b.package, "description": "", "error": b.error} for b in broken]
    rows.sort(key=lambda r: r["name"])
    if as_json:
        print_json(rows)
        return
    table = DataTable("name", "from", "description")
    for r in rows:
        text = styled(f"failed to load: {r['error']}", "red") if r["error"] else r["description"]
        table.add_row(r["name"], r["source"], text)
    console.print(table)


@template_app.command("show")
def template_show(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A template's description, params (type, default) and the tasks it uses."""
    from tradelane import templates

    try:
        described = templates.get(name).describe()
    except templates.TemplateError as exc:
        _fail(exc)
    if as_json:
        print_json(described)
        return
    console.print(
        f"[bold]{safe(described['name'])}[/bold] (from {safe(described['source'])}, "
        f"flow {safe(described['flow'])})"
    )
    if described["description"]:
        console.print(described["description"], markup=False)
    if described["params"]:
        table = DataTable("param", "type", "default", "description", title="params")
        for p in described["params"]:
            default = styled("required", "yellow") if p["required"] else repr(p["default"])
            table.add_row(p["name"], p["type"], default, p["description"])
        console.print(table)
    else:
        console.print("params: none")
    console.print("tasks: " + (", ".join(described["tasks"]) or "-"))


@template_app.command("new")
def template_new(
    name: str,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write the package folder NAME (created if missing).")
    ] = Path("."),
) -> None:
    """Write a small installable package for a new template into DIR/NAME (see docs/templates.md)."""
    from tradelane import scaffold, templates

    try:
        written = scaffold.write(name, directory)
    except (templates.TemplateError, FileExistsError) as exc:
        _fail(exc)
    console.print(f"template [bold]{safe(name)}[/bold] written to {safe(written)}")
    console.print(f"  test it:    cd {safe(written)} && pytest")
    console.print(f"  install it: pip install -e {safe(written)}   (then restart `tradelane up`)")
    console.print(f"  use it:     tradelane flow add NAME --source ... --dest ... --template {safe(name)}")


def _fail(exc: Exception) -> NoReturn:
    from rich.markup import escape

    err.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(1) from None
