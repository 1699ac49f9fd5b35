"""The console's first page (/console) through a real uvicorn server with a real login: the
account's transfers counted by state (as core counts them, each linking to the filtered transfers
page), the B2B invitations still pending, and the link to the Prefect UI."""

from __future__ import annotations

import re
from pathlib import Path

from core import transfers
from core.b2b import connections
from core.b2b.caller import cli_caller
from core.config import get_settings
from core.db import session_scope
from tests.b2b.web_server import forms_of, text_of
from tests.console_server import ConsoleServer, console_server
from tests.derived.support import add_dir_endpoint, add_flow, add_partner, receive
from tests.tenancy import home_scope

__all__ = ["console_server"]


def test_the_overview_counts_transfers_by_state_and_pending_invitations(
    console_server: ConsoleServer, tmp_path: Path
) -> None:
    with console_server.browser("read-only") as browser:
        empty = browser.get("/console")
        assert empty.status_code == 200
        assert "No transfers yet" in text_of(empty) and "No invitation pending" in text_of(empty)

        add_partner("ov-partner")
        (tmp_path / "out" / "in").mkdir(parents=True)
        add_dir_endpoint("ov-out", tmp_path / "out")
        flow_id = add_flow("ov-flow", "ov-partner", "ov-out")
        for name in ("a.txt", "b.txt"):
            receive("ov-partner", name, b"x\n", flow_id)
        with session_scope() as session:
            connections.invite(
                session,
                cli_caller(session, "home"),
                name="ov-invite",
                direction="receive",
                email="ops@other.example",
                dest="ov-out:in",
            )
            counted = transfers.counts(session, home_scope(session))

        page = browser.get("/console")
        rows = dict(
            re.findall(r'<td><a href="/console/transfers\?state=(\w+)">\1</a></td><td>(\d+)</td>', page.text)
        )
        assert {state: int(n) for state, n in rows.items() if int(n)} == counted == {"pending": 2}
        assert set(rows) == {"pending", "running", "delivered", "failed", "rejected", "waiting"}
        assert "All 2 transfers" in text_of(page)
        assert re.search(r'<span class="badge" id="pending-invitations">1</span>', page.text)
        assert "1 invitation to another account pending" in text_of(page)
        prefect = get_settings().prefect_links_url
        assert prefect and f'href="{prefect}"' in page.text
        assert 'aria-current="page">Console</a>' in page.text


def test_log_out_everywhere_ends_every_session_of_the_user(console_server: ConsoleServer) -> None:
    """Two browsers of one read-only user (its own sessions: any role may end them); another user's
    session is not touched."""
    with (
        console_server.browser("read-only") as here,
        console_server.browser("read-only") as there,
        console_server.browser("operator") as operator,
    ):
        assert there.get("/console").status_code == 200
        form = forms_of(here.get("/console"))["/console/logout-everywhere"]
        ended = here.post("/console/logout-everywhere", data=form)
        assert ended.status_code == 303 and ended.headers["location"] == "/login?done=logout"
        for browser in (here, there):
            gone = browser.get("/console")
            assert gone.status_code == 303 and gone.headers["location"].startswith("/login?next=/console")
        assert operator.get("/console").status_code == 200
