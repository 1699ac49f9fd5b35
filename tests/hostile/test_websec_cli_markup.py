"""Partner-controlled text printed by the CLI is data, never rich markup: a file name uploaded over
REST (a real uvicorn server on 127.0.0.1) holding `[bold]`/`[red]` prints as it is in
`tradelane transfers` and `tradelane audit`, and a reason holding `[/red]` (a closing tag with no
opening one, which rich refuses with MarkupError) neither crashes a command nor loses its text."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app as cli_app
from core.db import session_scope
from core.models import Transfer, TransferState
from tests.api.conftest import app, client, make_partner, server, tradelane_home

__all__ = ["app", "client", "make_partner", "server", "tradelane_home"]

NAME = "[bold]po[red]1[blink]:smile:.json"  # markup and an emoji code, in a name intake allows
REASON = "field 'x' holds '[/red][bold]oops' (a validator quoting the file)"
runner = CliRunner()


def _cli(*args: str) -> str:
    result = runner.invoke(cli_app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    return result.output


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_hostile_names_and_reasons_print_as_they_are(make_partner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    partner = make_partner().login()
    _cli("endpoint", "add", "markup-out", "--type", "file", "--path", str(tmp_path))
    _cli("flow", "add", "markup-flow", "--source", f"mailbox:{partner.name}", "--dest", "markup-out")
    sent = partner.upload(None, b"{}", disposition=f'attachment; filename="{NAME}"')
    assert sent.status_code == 201, sent.text
    with session_scope() as session:
        transfer = session.exec(select(Transfer).order_by(Transfer.id.desc())).first()  # type: ignore[union-attr]
        assert transfer is not None
        transfer.state = TransferState.failed
        transfer.error = REASON
        session.add(transfer)

    for args in (["transfers", "--wide"], ["transfers"], ["audit", "--wide"]):
        printed = _cli(*args)
        if args == ["transfers"]:  # 80 columns: the name may be cut, but what shows is as it is
            assert "[bold]po" in printed, printed
            continue
        assert NAME in _flat(printed), printed
        if args[0] == "transfers":
            assert REASON in _flat(printed), printed
