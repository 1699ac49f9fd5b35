"""Partner, endpoint, data flow and transfer refusals carry a status (core/errors.py), so the CLI says
`error: 404: …` and a web or API front end answers 404/409/400 without guessing from the words."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from cli.main import app
from core import dataflows, partners, transfers
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import ConfigError
from core.errors import Conflict, Invalid, NotFound, StatusError
from tests.isolation import isolated_home
from tests.services.conftest import unique
from tests.tenancy import home_scope

PASSWORD = "Status-Pass-12345"


def refused(call: Callable[[], object]) -> StatusError:
    with pytest.raises(StatusError) as caught:
        call()
    return caught.value


def test_each_refusal_has_its_status(session: Session, tmp_path: Path) -> None:
    cli = home_scope(session)
    partner, endpoint, flow = unique("sp"), unique("se"), unique("sf")
    partners.add(session, cli, partner, password=PASSWORD)
    endpoint_rows.add(session, cli, endpoint, "file", {"path": str(tmp_path)})
    dataflows.add(session, cli, flow, source=f"mailbox:{partner}", dest=endpoint)
    cases: list[tuple[Callable[[], object], type[Exception], type[StatusError], str]] = [
        (lambda: partners.require(session, cli, "nobody"), partners.PartnerError, NotFound,
         "no partner named 'nobody'"),
        (lambda: partners.add(session, cli, partner, password=PASSWORD), partners.PartnerError, Conflict,
         f"partner {partner!r} already exists"),
        (lambda: partners.add(session, cli, "_x", password=PASSWORD), partners.PartnerError, Invalid,
         "partner names starting with '_' are reserved: '_x'"),
        (lambda: partners.remove(session, cli, partner), partners.PartnerInUse, Conflict,
         f"partner {partner!r} is used by data flow {flow}: remove or change them first "
         "(tradelane flow remove|set), or pass --force to disable them"),
        (lambda: endpoint_rows.require(session, cli, "nowhere"), ConfigError, NotFound,
         "no endpoint named 'nowhere'"),
        (lambda: endpoint_rows.add(session, cli, endpoint, "file", {"path": str(tmp_path)}), ConfigError,
         Conflict, f"endpoint {endpoint!r} already exists"),
        (lambda: endpoint_rows.set_settings(session, cli, endpoint, {}, {}, ["colour"]), ConfigError, Invalid,
         "file endpoint has no setting 'colour' to unset (known: "),
        (lambda: endpoint_rows.remove(session, cli, endpoint), endpoint_rows.EndpointInUse, Conflict,
         f"endpoint {endpoint!r} is used by data flow(s) {flow}: "),
        (lambda: dataflows.require(session, cli, "noflow"), dataflows.DataFlowError, NotFound,
         "no data flow named 'noflow'"),
        (lambda: dataflows.add(session, cli, flow, source=f"mailbox:{partner}", dest=endpoint),
         dataflows.DataFlowError, Conflict, f"data flow {flow!r} already exists"),
        (lambda: dataflows.add(session, cli, unique("sg"), source=f"mailbox:{partner}", dest="nowhere"),
         dataflows.DataFlowError, NotFound, "destination 'nowhere': no endpoint named 'nowhere'"),
        (lambda: dataflows.add(session, cli, unique("sg"), source="mailbox:ghost", dest=endpoint),
         dataflows.DataFlowError, NotFound, "source 'mailbox:ghost': no partner named 'ghost'"),
        (lambda: dataflows.add(session, cli, unique("sg"), source=f"mailbox:{partner}", dest=endpoint,
                               retries=-1), dataflows.DataFlowError, Invalid,
         "retries and retry delay must not be negative"),
        (lambda: transfers.replay(session, cli, 987654), transfers.TransferError, NotFound,
         "no transfer 987654"),
    ]  # fmt: skip
    for call, family, kind, words in cases:
        error = refused(call)
        assert isinstance(error, family) and isinstance(error, kind), (words, type(error))
        assert error.status == kind.status, words
        assert error.message.startswith(words), (error.message, words)
        assert str(error) == f"{kind.status}: {error.message}"


def test_cli_prints_the_status(tmp_path: Path) -> None:
    runner = CliRunner()
    with isolated_home(tmp_path / "home"):

        def refused(*args: str) -> str:
            result = runner.invoke(app, list(args))
            assert result.exit_code == 1, result.output
            return " ".join(result.output.split())

        assert refused("partner", "remove", "nobody") == "error: 404: no partner named 'nobody'"
        assert refused("endpoint", "remove", "nowhere") == "error: 404: no endpoint named 'nowhere'"
        assert refused("flow", "remove", "noflow") == "error: 404: no data flow named 'noflow'"
        assert refused("replay", "42") == "error: 404: no transfer 42"
        out = refused("flow", "add", "f", "--source", "mailbox:ghost", "--dest", "x")
        assert out == "error: 404: source 'mailbox:ghost': no partner named 'ghost'"
        assert re.fullmatch(r"error: 404: .*", refused("partner", "key", "remove", "nobody", "1"))
