"""The console's endpoint and transfer pages through a real uvicorn server (tests/console_server.py):
an operator adds an endpoint through its generated form, edits it, tests it and removes it; bad
values come back next to their fields; secrets never come back; a read-only user sees no change
button and is refused every change; forged or cross-site posts change nothing; transfers are
filtered (also by the Prefect run the link artifact names) and replayed."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from core.db import session_scope
from core.endpoints import rows as endpoint_rows
from core.models import Transfer, TransferState
from tests.console_server import ConsoleServer, console_server, main_of, own_csrf
from tests.derived.support import add_dir_endpoint, add_flow, add_partner, receive
from tests.file_roots import home_files
from tests.tenancy import home_scope
from tests.web_form_reader import read_page

__all__ = ["console_server", "home_files"]

SECRET = "s3cr3t-console-31"


def text_of(response: httpx.Response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


def post_form(
    browser: httpx.Client, page: httpx.Response, action: str, typed: dict[str, str], **kw: object
) -> httpx.Response:
    fields = read_page(page.text, action).submit(typed, **kw)  # type: ignore[arg-type]
    return browser.post(action, data=fields)


def stored(name: str) -> endpoint_rows.EndpointRow | None:
    with session_scope() as session:
        return endpoint_rows.get(session, home_scope(session), name)


def test_an_operator_adds_edits_tests_and_removes_an_endpoint(
    console_server: ConsoleServer, home_files: Path
) -> None:
    folder = home_files / "out"
    folder.mkdir()
    with console_server.browser("operator") as browser:
        listing = browser.get("/console/endpoints")
        assert listing.status_code == 200 and "No endpoints yet" in text_of(listing)
        new = browser.get("/console/endpoints/new", params={"type": "file"})
        assert new.status_code == 200
        added = post_form(browser, new, "/console/endpoints", {"name": "drop", "setting.path": str(folder)})
        assert added.status_code == 303 and added.headers["location"] == "/console/endpoints/drop"
        shown = browser.get(added.headers["location"])
        assert "Added drop." in text_of(shown) and str(folder) in shown.text

        tested = post_form(browser, shown, "/console/endpoints/drop/test", {})
        assert tested.status_code == 200
        assert f"✓ drop reachable (file://{folder})" in text_of(tested)

        other = home_files / "elsewhere"
        edited = post_form(browser, shown, "/console/endpoints/drop", {"setting.path": str(other)})
        assert edited.status_code == 303 and "Saved drop." in text_of(browser.get(edited.headers["location"]))
        row = stored("drop")
        assert row is not None and row.config == {"path": str(other)}
        tested = post_form(
            browser, browser.get("/console/endpoints/drop"), "/console/endpoints/drop/test", {}
        )
        assert "✗ drop: not found:" in text_of(tested)  # the folder does not exist: said, not crashed

        removed = post_form(
            browser, browser.get("/console/endpoints/drop"), "/console/endpoints/drop/remove", {}
        )
        assert removed.status_code == 303 and stored("drop") is None


def test_bad_values_come_back_next_to_their_fields(console_server: ConsoleServer) -> None:
    with console_server.browser("operator") as browser:
        new = browser.get("/console/endpoints/new", params={"type": "sftp"})
        typed = {
            "name": "bad-sftp",
            "setting.host": "h.example",
            "setting.port": "0",
            "secret.password": SECRET,
        }
        refused = post_form(browser, new, "/console/endpoints", typed)
        assert refused.status_code == 400
        port = read_page(refused.text, "/console/endpoints").by_name()["setting.port"]
        assert port.value == "0" and port.attrs["aria-invalid"] == "true"
        error = re.search(r'id="f-setting-port-error">([^<]*)<', refused.text)
        assert (
            error
            and error.group(1) == "sftp endpoint &#39;port&#39;: input should be greater than or equal to 1"
        )
        assert "sftp endpoint needs &#39;user&#39;" in refused.text
        assert SECRET not in refused.text and stored("bad-sftp") is None
        taken = post_form(browser, browser.get("/console/endpoints/new?type=file"), "/console/endpoints",
                          {"name": "bad name!", "setting.path": "/tmp"})  # fmt: skip
        assert taken.status_code == 400 and "invalid name" in text_of(taken)


def test_secrets_are_write_only(console_server: ConsoleServer) -> None:
    with console_server.browser("operator") as browser:
        new = browser.get("/console/endpoints/new", params={"type": "s3"})
        typed = {
            "name": "lake",
            "setting.bucket": "b",
            "secret.access_key_id": "AKIA31",
            "secret.secret_access_key": SECRET,
        }
        assert post_form(browser, new, "/console/endpoints", typed).status_code == 303
        page = browser.get("/console/endpoints/lake")
        assert SECRET not in page.text and "AKIA31" not in page.text
        assert "access_key_id, secret_access_key" in text_of(page)  # which are set, never their values
        # Saving the form untouched keeps them; clearing one alone is refused by the model's own
        # check (the pair goes together), with no secret in the answer; clearing both unsets them.
        untouched = post_form(browser, page, "/console/endpoints/lake", {})
        assert "Nothing changed in lake." in text_of(browser.get(untouched.headers["location"]))
        one = post_form(browser, page, "/console/endpoints/lake", {}, ticked={"clear.access_key_id"})
        assert one.status_code == 400 and "need both access_key_id and secret_access_key" in text_of(one)
        assert SECRET not in one.text and "AKIA31" not in one.text
        both = {"clear.access_key_id", "clear.secret_access_key"}
        assert post_form(browser, page, "/console/endpoints/lake", {}, ticked=both).status_code == 303
    row = stored("lake")
    assert row is not None
    assert endpoint_rows.row_secret_names(row) == []


def test_a_read_only_user_sees_no_change_and_is_refused_every_change(
    console_server: ConsoleServer, home_files: Path
) -> None:
    with console_server.browser("operator") as operator:
        new = operator.get("/console/endpoints/new", params={"type": "file"})
        post_form(operator, new, "/console/endpoints", {"name": "ro-target", "setting.path": str(home_files)})
        csrf_page = operator.get("/console/endpoints/ro-target")
        csrf = read_page(csrf_page.text, "/console/endpoints/ro-target/test").by_name()["csrf"].value
    with console_server.browser("read-only") as reader:
        csrf = own_csrf(reader)  # its own valid CSRF pair: only the role stops it
        listing = reader.get("/console/endpoints")
        assert listing.status_code == 200 and "/console/endpoints/new" not in listing.text
        page = reader.get("/console/endpoints/ro-target")
        assert page.status_code == 200 and str(home_files) in page.text
        assert "<button" not in main_of(page.text)  # no Test, Save or Remove
        assert reader.get("/console/endpoints/new?type=file").status_code == 403
        for action, data in [
            ("/console/endpoints", {"type": "file", "name": "ro-new", "setting.path": "/tmp"}),
            ("/console/endpoints/ro-target", {"setting.path": "/elsewhere"}),
            ("/console/endpoints/ro-target/test", {}),
            ("/console/endpoints/ro-target/remove", {"force": "1"}),
            ("/console/transfers/1/replay", {}),
        ]:
            assert reader.post(action, data={**data, "csrf": csrf}).status_code == 403, action
    row = stored("ro-target")
    assert row is not None and row.config == {"path": str(home_files)} and stored("ro-new") is None


@pytest.mark.parametrize("attack", ["forged", "missing", "cross-site"])
def test_forged_and_cross_site_posts_change_nothing(console_server: ConsoleServer, attack: str) -> None:
    with console_server.browser("operator") as browser:
        new = browser.get("/console/endpoints/new", params={"type": "file"})
        fields = read_page(new.text, "/console/endpoints").submit(
            {"name": f"csrf-{attack}", "setting.path": "/tmp"}
        )
        headers = {}
        if attack == "forged":
            fields["csrf"] = "0" * 64
        elif attack == "missing":
            del fields["csrf"]
        else:
            headers = {"Origin": "https://evil.example"}
        answer = browser.post("/console/endpoints", data=fields, headers=headers)
        assert answer.status_code == 403
    assert stored(f"csrf-{attack}") is None


def test_transfers_are_filtered_by_run_link_to_prefect_and_replay(
    console_server: ConsoleServer, home_files: Path
) -> None:
    add_partner("con-partner")
    add_dir_endpoint("con-out", home_files / "con-out")
    flow_id = add_flow("con-flow", "con-partner", "con-out")
    first = receive("con-partner", "a.txt", b"a\n", flow_id)
    second = receive("con-partner", "b.txt", b"b\n", flow_id)
    run_id = "0b7c1e2a-5f0e-4c59-9d63-2f1a7e4b8c11"
    with session_scope() as session:  # as a run that failed to deliver the first file would leave them
        for transfer in session.exec(select(Transfer).where(Transfer.id == first)):
            transfer.state, transfer.flow_run_id, transfer.error = TransferState.failed, run_id, "disk <full>"
            session.add(transfer)
    with console_server.browser("operator") as browser:
        assert (
            "con-out" in text_of(browser.get("/console/endpoints")).split("con-flow")[0]
        )  # used by con-flow
        everything = browser.get("/console/transfers")
        assert everything.status_code == 200
        assert "a.txt" in everything.text and "b.txt" in everything.text
        assert "disk &lt;full&gt;" in everything.text
        assert f'href="http://127.0.0.1:4200/runs/flow-run/{run_id}"' in everything.text
        of_run = browser.get("/console/transfers", params={"run": run_id})
        assert "a.txt" in of_run.text and "b.txt" not in of_run.text
        failed = browser.get("/console/transfers", params={"state": "failed", "flow": "con-flow"})
        assert "a.txt" in failed.text and "b.txt" not in failed.text
        # The time-window links keep the other filters; each finds both (received just now).
        links = re.findall(r'href="(/console/transfers\?[^"]*since=[^"]*)"', failed.text)
        assert len(links) == 3 and all("state=failed" in link and "flow=con-flow" in link for link in links)
        assert "a.txt" in browser.get(links[0].replace("&amp;", "&")).text
        dest = read_page(everything.text, "/console/transfers").by_name()["dest"]
        assert "con-out" in dest.options  # a select of the account's endpoints
        assert "a.txt" in browser.get("/console/transfers", params={"dest": "con-out"}).text
        assert f"/console/transfers/{second}/replay" not in everything.text  # pending: nothing to replay
        replayed = post_form(browser, everything, f"/console/transfers/{first}/replay", {})
        assert replayed.status_code == 303
        after = browser.get(replayed.headers["location"])
        again = re.search(r"Replayed as transfer (\d+) \(pending\)\.", text_of(after))
        assert again and f"Replay of transfer {first}" in text_of(after)
        detail = browser.get(f"/console/transfers/{first}")
        assert "disk &lt;full&gt;" in detail.text and f"Replayed as transfer {again.group(1)}" in text_of(
            detail
        )
        assert f'href="http://127.0.0.1:4200/runs/flow-run/{run_id}"' in detail.text
        assert browser.get("/console/transfers/99999").status_code == 404
        assert browser.get("/console/transfers", params={"since": "yesterday"}).status_code == 400


def test_test_these_settings_probes_the_form_and_stores_nothing(
    console_server: ConsoleServer, home_files: Path
) -> None:
    there = home_files / "there"
    there.mkdir()
    with console_server.browser("operator") as browser:
        new = browser.get("/console/endpoints/new", params={"type": "file"})
        fields = read_page(new.text, "/console/endpoints").submit(
            {"name": "tried", "setting.path": str(there)}
        )
        tried = browser.post("/console/endpoints/try", data=fields)
        assert tried.status_code == 200
        assert f"✓ tried reachable (file://{there}) (not saved yet)" in text_of(tried)
        assert read_page(tried.text, "/console/endpoints").by_name()["setting.path"].value == str(there)
        assert stored("tried") is None
        fields["setting.path"] = str(home_files / "missing")
        assert "✗ tried: not found:" in text_of(browser.post("/console/endpoints/try", data=fields))

        # On an edit form: the stored endpoint is not changed by trying other settings.
        browser.post("/console/endpoints", data={**fields, "setting.path": str(there)})
        page = browser.get("/console/endpoints/tried")
        edit = read_page(page.text, "/console/endpoints/tried").submit(
            {"setting.path": str(home_files / "gone")}
        )
        assert edit["editing"] == "1"
        tried = browser.post("/console/endpoints/try", data=edit)
        assert tried.status_code == 200 and "✗ tried: not found:" in text_of(tried)
        row = stored("tried")
        assert row is not None and row.config == {"path": str(there)}
    with console_server.browser("read-only") as reader:
        edit["csrf"] = own_csrf(reader)
        assert reader.post("/console/endpoints/try", data=edit).status_code == 403
