"""The console's data flow pages through a real uvicorn server (tests/console_server.py): an
operator adds a data flow from a partner's mailbox to an endpoint (and one into another partner's
mailbox, which delivers into download/ as the CLI's does), edits it, disables, enables and
removes it; a bad check is refused in the CLI's words; a read-only user changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from core import dataflows
from core.db import session_scope
from tests.console_server import ConsoleServer, console_server, main_of, own_csrf
from tests.derived.support import add_dir_endpoint, add_partner
from tests.tenancy import home_scope
from tests.web_form_reader import read_page

__all__ = ["console_server"]


def text_of(response: httpx.Response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


def post_form(
    browser: httpx.Client, page: httpx.Response, action: str, typed: dict[str, str]
) -> httpx.Response:
    return browser.post(action, data=read_page(page.text, action).submit(typed))


def flow(name: str) -> dataflows.DataFlow | None:
    with session_scope() as session:
        return dataflows.get(session, home_scope(session), name)


def test_an_operator_adds_edits_and_removes_a_data_flow(
    console_server: ConsoleServer, tmp_path: Path
) -> None:
    add_partner("fl-acme")
    add_partner("fl-bank")
    add_dir_endpoint("fl-out", tmp_path / "fl-out")
    with console_server.browser("operator") as browser:
        listing = browser.get("/console/flows")
        assert "No data flows yet" in text_of(listing)
        typed = {
            "name": "acme-out",
            "source": "mailbox:fl-acme",
            "dest": "fl-out",
            "pattern": "*.json",
            "checks": "json\nmax_size=10MiB",
            "retries": "3",
            "on_conflict": "fail",
        }
        added = post_form(browser, listing, "/console/flows", typed)
        assert added.status_code == 303, added.text
        page = browser.get(added.headers["location"])
        assert "Added acme-out." in text_of(page) and "json, max_size=10485760" in text_of(page)
        made = flow("acme-out")
        assert (
            made is not None and made.pattern == "*.json" and made.retries == 3 and made.on_conflict == "fail"
        )
        assert made.validators == [{"type": "json"}, {"type": "max_size", "bytes": 10 * 1024 * 1024}]

        typed = {"name": "to-bank", "source": "mailbox:fl-acme", "dest": "mailbox:fl-bank"}
        to_bank = post_form(browser, listing, "/console/flows", typed)
        assert to_bank.status_code == 303
        made = flow("to-bank")
        assert made is not None and made.dest_path == "download/{name}"  # as `flow add` makes it

        typed = {
            "name": "poll-out",
            "source": "fl-out",
            "dest": "mailbox:fl-bank",
            "every": "5m",
            "after_pull": "delete",
        }
        polling = post_form(browser, listing, "/console/flows", typed)
        assert polling.status_code == 303, polling.text
        made = flow("poll-out")
        assert made is not None and made.schedule_interval_seconds == 300 and made.after_pull == "delete"
        assert "(every 300 s)" in text_of(browser.get("/console/flows"))
        typed = {**typed, "name": "poll-none", "every": ""}  # a polled source needs a schedule: core says so
        assert post_form(browser, listing, "/console/flows", typed).status_code == 400
        assert flow("poll-none") is None

        edited = post_form(browser, page, "/console/flows/acme-out", {"pattern": "*.xml", "checks": "xml"})
        assert edited.status_code == 303
        made = flow("acme-out")
        assert made is not None and made.pattern == "*.xml" and made.validators == [{"type": "xml"}]
        assert made.retries == 3 and made.on_conflict == "fail"  # what the form shows is kept

        page = browser.get("/console/flows/acme-out")
        assert post_form(browser, page, "/console/flows/acme-out/disable", {}).status_code == 303
        assert flow("acme-out") is not None and not flow("acme-out").enabled  # type: ignore[union-attr]
        page = browser.get("/console/flows/acme-out")
        assert post_form(browser, page, "/console/flows/acme-out/enable", {}).status_code == 303
        page = browser.get("/console/flows/acme-out")
        assert post_form(browser, page, "/console/flows/acme-out/remove", {}).status_code == 303
        assert flow("acme-out") is None


def test_bad_flow_input_is_refused_in_the_clis_words(console_server: ConsoleServer, tmp_path: Path) -> None:
    add_partner("fl-bad")
    add_dir_endpoint("fl-bad-out", tmp_path / "bad-out")
    with console_server.browser("operator") as browser:
        listing = browser.get("/console/flows")
        typed = {"name": "bad-check", "source": "mailbox:fl-bad", "dest": "fl-bad-out", "checks": "jsn"}
        refused = post_form(browser, listing, "/console/flows", typed)
        assert refused.status_code == 400 and "unknown validator &#39;jsn&#39;" in refused.text
        assert read_page(refused.text, "/console/flows").by_name()["checks"].value == "jsn"
        typed = {**typed, "checks": "", "retries": "many"}
        assert "retries: not a number" in text_of(post_form(browser, listing, "/console/flows", typed))
    assert flow("bad-check") is None


def test_a_read_only_user_cannot_change_flows(console_server: ConsoleServer, tmp_path: Path) -> None:
    add_partner("fl-ro")
    add_dir_endpoint("fl-ro-out", tmp_path / "ro-out")
    with console_server.browser("operator") as operator:
        listing = operator.get("/console/flows")
        post_form(
            operator,
            listing,
            "/console/flows",
            {"name": "ro-flow", "source": "mailbox:fl-ro", "dest": "fl-ro-out"},
        )
        csrf = read_page(listing.text, "/console/flows").by_name()["csrf"].value
    with console_server.browser("read-only") as reader:
        csrf = own_csrf(reader)  # its own valid CSRF pair: only the role stops it
        assert "<form" not in main_of(reader.get("/console/flows/ro-flow").text)
        assert 'action="/console/flows"' not in reader.get("/console/flows").text
        for action in ("", "/disable", "/remove"):
            assert (
                reader.post(
                    f"/console/flows/ro-flow{action}", data={"csrf": csrf, "pattern": "x"}
                ).status_code
                == 403
            )
        assert reader.post("/console/flows", data={"csrf": csrf, "name": "ro-2"}).status_code == 403
    made = flow("ro-flow")
    assert made is not None and made.enabled and made.pattern == "*"
