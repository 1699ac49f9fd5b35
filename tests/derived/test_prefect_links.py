"""Links between tradelane and the Prefect UI, both ways (core/links.py): a real transfer run
publishes, next to its table (which names each transfer's id), one link artifact to the console's
transfers page filtered by that run; `tradelane transfers` links each transfer to its run under
TRADELANE_PREFECT_PUBLIC_URL, and shows none when it is empty."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from prefect.utilities.asyncutils import run_coro_as_sync
from typer.testing import CliRunner

from cli.main import app
from core.config import Settings, get_settings
from core.links import console_run_url, prefect_run_url
from flows.outcomes import CONSOLE_LINK_KEY, CONSOLE_LINK_TEXT
from flows.transfer import transfer
from tests.derived.support import (
    add_dir_endpoint,
    add_flow,
    add_partner,
    receive,
    table_rows,
    view,
)


def artifacts_of(run_id: str) -> list[dict[str, Any]]:
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
    response = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


@pytest.fixture(scope="module")
def carried(derived_home: Path, prefect_server: None) -> list[int]:
    """Two files carried by one real run of the transfer template."""
    add_partner("linker")
    add_dir_endpoint("links-out", derived_home.parent / "links-out")
    flow_id = add_flow("links", "linker", "links-out")
    ids = [receive("linker", f"f{n}.txt", b"hello %d\n" % n, flow_id) for n in (1, 2)]
    state = run_coro_as_sync(transfer(flow_id, ids, return_state=True))
    assert state.is_completed(), state.message
    return ids


def test_a_run_links_back_to_the_console_filtered_by_itself(carried: list[int]) -> None:
    run_id = view(carried[0]).flow_run_id
    assert run_id is not None and view(carried[1]).flow_run_id == run_id  # one run carried both
    (link,) = [a for a in artifacts_of(run_id) if a["type"] == "markdown" and a["key"] == CONSOLE_LINK_KEY]
    expected = f"{get_settings().public_base_url}/console/transfers?run={run_id}"
    assert console_run_url(run_id) == expected
    assert link["data"] == f"[{CONSOLE_LINK_TEXT}]({expected})"
    # The run's table names each transfer by its id (what the console's row links use).
    assert sorted(row["transfer"] for row in table_rows("links")) == sorted(carried)


def test_transfers_links_each_row_to_its_run_under_the_public_prefect_url(
    carried: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = view(carried[0]).flow_run_id
    runner = CliRunner()

    def shown(public: str | None) -> dict[int, Any]:
        if public is None:
            monkeypatch.delenv("TRADELANE_PREFECT_PUBLIC_URL", raising=False)
        else:
            monkeypatch.setenv("TRADELANE_PREFECT_PUBLIC_URL", public)
        get_settings.cache_clear()
        result = runner.invoke(app, ["transfers", "--json"])
        assert result.exit_code == 0, result.output
        return {row["id"]: row["run_url"] for row in json.loads(result.output)}

    try:
        default = shown(None)
        assert default[carried[0]] == f"{get_settings().prefect_ui_url}/runs/flow-run/{run_id}"
        public = shown("https://prefect.example.com/ui/")
        assert public[carried[0]] == f"https://prefect.example.com/ui/runs/flow-run/{run_id}"
        assert prefect_run_url(run_id) == public[carried[0]]  # the console's link is the CLI's
        hidden = shown("")
        assert hidden[carried[0]] is None and prefect_run_url(run_id) is None
        table = runner.invoke(app, ["transfers", "--wide"])
        assert table.exit_code == 0 and "/runs/flow-run/" not in table.output
    finally:
        monkeypatch.delenv("TRADELANE_PREFECT_PUBLIC_URL", raising=False)
        get_settings.cache_clear()


@pytest.mark.parametrize(
    "value",
    [
        "prefect.example.com",
        "ftp://prefect.example.com",
        "https://u:p@prefect.example.com",
        "https://x.example?q=1",
    ],
)
def test_a_prefect_public_url_that_is_no_web_address_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="prefect_public_url"):
        Settings(prefect_public_url=value)
