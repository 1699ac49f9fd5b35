"""Point core's cached settings, engine and key at a throwaway home for one test (defined once, in
tradelane.testing, which template authors' tests use too), and run the CLI in this process."""

from __future__ import annotations

from typer.testing import CliRunner

from tradelane.testing import clear_caches, isolated_home

__all__ = ["clear_caches", "isolated_home", "run_cli"]

_runner = CliRunner()


def run_cli(*args: str, ok: bool = True) -> str:
    """`tradelane ARGS` in this process, against the current home; its output. Asserts that it
    succeeded (or, with `ok=False`, that it failed)."""
    from cli.main import app

    result = _runner.invoke(app, list(args))
    assert (result.exit_code == 0) is ok, result.output
    return result.output
