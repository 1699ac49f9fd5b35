"""The portal in a real browser (headless Chromium, tus-js-client under the page's strict CSP) against
`tradelane up`: the issue's first test — a partner drops two files, both progress bars reach their
end, and the recent uploads say one was delivered and one rejected, with the validator's message
exactly as `tradelane transfers --json` gives it; the file chooser with several files; Cancel."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from playwright.async_api import Page, Request, Route, expect

from tests.system import System
from tests.web.conftest import Watched

PASSWORD = "Pw-browser-portal-1"
_names = itertools.count(1)


async def add_partner_with_flow(system: System, dest: Path) -> tuple[str, str]:
    """A partner whose uploads go to `dest` through a flow that checks JSON; (partner, flow)."""
    n = next(_names)
    name, endpoint, flow = f"portalb{n}", f"portalb{n}-dir", f"portalb{n}-flow"
    dest.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(system.cli, "partner", "add", name, "--password", PASSWORD)
    await asyncio.to_thread(system.cli, "endpoint", "add", endpoint, "--type", "file", "--path", str(dest))
    await asyncio.to_thread(
        system.cli,
        "flow",
        "add",
        flow,
        "--source",
        f"mailbox:{name}",
        "--dest",
        endpoint,
        "--validate",
        "json",
    )
    return name, flow


async def log_in(page: Page, name: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Partner name or e-mail address").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(re.compile(r"/portal$"))
    await expect(page.locator("#upload.scripted")).to_be_attached()  # upload.js is listening


async def drop_files(page: Page, selector: str, files: list[tuple[str, str]]) -> None:
    """Drop files on `selector` as a user dragging them from the desktop would (a DataTransfer)."""
    transfer = await page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, text] of files) {
                dt.items.add(new File([text], name, {type: "application/json"}));
            }
            return dt;
        }""",
        files,
    )
    await page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    await page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    await page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def settled(count: int) -> Any:
    return lambda rows: len(rows) >= count and all(r["state"] in ("delivered", "rejected") for r in rows)


async def test_dropped_files_reach_the_end_and_say_delivered_or_rejected(
    watched: Watched, web_system: System, tmp_path: Path
) -> None:
    page = watched.page
    partner, flow = await add_partner_with_flow(web_system, tmp_path / "out")
    await log_in(page, partner)
    await drop_files(page, "#drop", [("good.json", '{"po": 1}'), ("bad.json", '{"po": 1,}')])
    items = page.locator("#progress li")
    await expect(items).to_have_count(2)
    for name, size in (("good.json", 9), ("bad.json", 10)):
        item = items.filter(has_text=name)
        bar = item.locator("progress")
        await expect(bar).to_have_attribute("max", str(size))
        await expect(bar).to_have_attribute("value", str(size))  # the bar reached its end
        await expect(item).to_contain_text("received")
    rows = await asyncio.to_thread(web_system.wait_for, settled(2), flow=flow)
    by_name = {r["file"]: r for r in rows}
    rejected = by_name["bad.json"]
    assert rejected["state"] == "rejected" and rejected["error"]
    assert by_name["good.json"]["state"] == "delivered"
    assert (tmp_path / "out" / "good.json").read_text() == '{"po": 1}'
    # The page refreshes its table by itself: the states, and the validator's exact words.
    recent = page.locator("#recent-body")
    await expect(recent.locator("tr", has_text="good.json")).to_contain_text("delivered", timeout=20_000)
    bad_row = recent.locator("tr", has_text="bad.json")
    await expect(bad_row).to_contain_text("rejected", timeout=20_000)
    await expect(bad_row.locator(".reason")).to_have_text(f": {rejected['error']}")


async def test_the_file_chooser_takes_several_files(
    watched: Watched, web_system: System, tmp_path: Path
) -> None:
    page = watched.page
    partner, flow = await add_partner_with_flow(web_system, tmp_path / "out")
    chosen = []
    for n in range(3):
        path = tmp_path / f"order{n}.json"
        path.write_text(json.dumps({"po": n, "lines": list(range(1000 * n))}))
        chosen.append(path)
    await log_in(page, partner)
    async with page.expect_file_chooser() as chooser_info:
        await page.get_by_text("Drop files here or choose them").click()
    chooser = await chooser_info.value
    assert chooser.is_multiple()
    await chooser.set_files(chosen)
    bars = page.locator("#progress progress")
    await expect(bars).to_have_count(3)
    for path in chosen:
        bar = page.locator("#progress li", has_text=path.name).locator("progress")
        await expect(bar).to_have_attribute("value", str(path.stat().st_size))
    rows = await asyncio.to_thread(web_system.wait_for, settled(3), flow=flow)
    assert sorted(r["state"] for r in rows) == ["delivered"] * 3
    for path in chosen:
        assert (tmp_path / "out" / path.name).read_bytes() == path.read_bytes()


async def test_cancel_leaves_nothing(watched: Watched, web_system: System, tmp_path: Path) -> None:
    page = watched.page
    partner, flow = await add_partner_with_flow(web_system, tmp_path / "out")
    held: list[Route] = []

    async def hold_patches(route: Route) -> None:
        if route.request.method == "PATCH":
            held.append(route)  # the bytes never leave the browser: the upload is mid-way
        else:
            await route.continue_()

    await log_in(page, partner)
    await page.route("**/portal/uploads/**", hold_patches)
    await drop_files(page, "#drop", [("cancelled.json", '{"never": "sent"}')])
    item = page.locator("#progress li", has_text="cancelled.json")
    await expect(item).to_contain_text("0 %")
    await item.get_by_role("button", name="Cancel cancelled.json").click()
    await expect(item).to_contain_text("cancelled")
    await expect(item.get_by_role("button")).to_have_count(0)
    for route in held:
        await route.abort()
    assert list(web_system.home.rglob("cancelled.json")) == []  # nothing staged, nothing received
    rows = await asyncio.to_thread(web_system.transfers, flow=flow)
    assert rows == []
    await page.reload()
    await expect(page.locator("#recent-body")).not_to_contain_text("cancelled.json")


async def test_markup_in_a_file_name_stays_text(watched: Watched, web_system: System, tmp_path: Path) -> None:
    page = watched.page
    partner, flow = await add_partner_with_flow(web_system, tmp_path / "out")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    hostile = '"><img src=x onerror=alert(1)>b<script>alert(2)<!--.json'
    await log_in(page, partner)
    await drop_files(page, "#drop", [(hostile, "{}")])
    item = page.locator("#progress li")
    await expect(item.locator(".upload-name")).to_have_text(hostile)
    await expect(item.locator("progress")).to_have_attribute("value", "2")
    await asyncio.to_thread(web_system.wait_for, settled(1), flow=flow)
    row = page.locator("#recent-body tr").first
    await expect(row).to_contain_text("delivered", timeout=20_000)
    await expect(row.locator("td").first).to_have_text(hostile)
    await page.reload()
    await expect(page.locator("#recent-body tr").first.locator("td").first).to_have_text(hostile)
    assert await page.locator("#recent-body img, #progress img, #recent-body script").count() == 0
    assert dialogs == []


async def test_choosing_the_file_again_after_a_reload_resumes_the_same_upload(
    watched: Watched, web_system: System, tmp_path: Path
) -> None:
    page = watched.page
    partner, flow = await add_partner_with_flow(web_system, tmp_path / "out")
    source = tmp_path / "again.json"
    source.write_text(json.dumps({"lines": list(range(20_000))}))
    held: list[Route] = []
    holding = True

    async def hold_patches(route: Route) -> None:
        if route.request.method == "PATCH" and holding:
            held.append(route)  # the page is left before a byte arrives
        else:
            await route.continue_()

    # The route stays until the page is gone. Removing the last one (page.unroute) turns Chromium's
    # request interception off, which sends the held PATCH on: the first page's upload then finished
    # during the reload, and when its page saw the 204 (more often under load) tus-js-client forgot
    # it (removeFingerprintOnSuccess), so choosing the file again rightly began a second upload.
    await page.route("**/portal/uploads/**", hold_patches)
    await log_in(page, partner)
    await page.set_input_files("#files", str(source))
    await expect(page.locator("#progress li", has_text=source.name)).to_contain_text("0 %")
    await page.reload()  # the browser gives the upload up; tus-js-client remembers it
    await expect(page.locator("#upload.scripted")).to_be_attached()
    holding = False
    for route in held:
        with contextlib.suppress(Exception):
            await route.abort()
    [(_, created)] = [r for r in watched.tus.requests if r[0] == "PATCH"]
    await page.set_input_files("#files", str(source))
    bar = page.locator("#progress li", has_text=source.name).locator("progress")
    await expect(bar).to_have_attribute("value", str(source.stat().st_size))
    rows = await asyncio.to_thread(web_system.wait_for, settled(1), flow=flow)
    assert [r["state"] for r in rows] == ["delivered"]
    with sqlite3.connect(web_system.home / "tradelane.db") as db:
        uploads = db.execute("SELECT state FROM web_upload WHERE name = ?", (source.name,)).fetchall()
    assert uploads == [("done",)]  # the same upload went on: no second one was begun
    # ...from where the server's bytes ended (none had arrived): asked, then sent, after the reload.
    after_reload = watched.tus.requests[[m for m, _ in watched.tus.requests].index("HEAD") :]
    assert after_reload == [("HEAD", created), ("PATCH", created)]


async def test_an_upload_that_ends_while_the_page_is_left_is_not_sent_again(
    watched: Watched, web_system: System, tmp_path: Path
) -> None:
    page = watched.page
    partner, flow = await add_partner_with_flow(web_system, tmp_path / "out")
    source = tmp_path / "left.json"
    source.write_text(json.dumps({"lines": list(range(20_000))}))
    item = page.locator("#progress li", has_text=source.name)
    held: list[Route] = []
    answered, handled = asyncio.Event(), asyncio.Event()

    async def hold_first_patch(route: Route) -> None:
        if route.request.method == "PATCH" and not held:
            held.append(route)
        else:
            await route.continue_()

    def on_finished(request: Request) -> None:
        if request.method == "PATCH":
            answered.set()

    def on_request(request: Request) -> None:
        if answered.is_set() and request.url.endswith("/portal/upload/recent"):
            handled.set()  # upload.js's onSuccess refreshes the recent uploads at once

    async def end_the_upload_meanwhile(route: Route) -> None:
        # The reload asks for the page; until the answer comes the old page is shown and its
        # script runs: its PATCH goes through now and ends there ("received"), unseen by the user.
        # (Locators wait for the navigation to end: the page's own requests say what it did.)
        if route.request.is_navigation_request():
            for patch in held:
                await patch.continue_()
            await asyncio.wait_for(handled.wait(), 15)
        await route.continue_()

    page.on("requestfinished", on_finished)
    page.on("request", on_request)

    await page.route("**/portal/uploads/**", hold_first_patch)
    await log_in(page, partner)
    await page.set_input_files("#files", str(source))
    await expect(item).to_contain_text("0 %")
    await page.route("**/portal", end_the_upload_meanwhile)
    await page.reload()
    await expect(page.locator("#upload.scripted")).to_be_attached()
    [(_, created)] = [r for r in watched.tus.requests if r[0] == "PATCH"]
    asked = len(watched.tus.requests)
    # The user chooses the file again, expecting the upload to go on: it is found complete.
    await page.set_input_files("#files", str(source))
    await expect(item).to_contain_text("received")
    assert watched.tus.requests[asked:] == [("HEAD", created)]  # nothing sent a second time
    rows = await asyncio.to_thread(web_system.wait_for, settled(1), flow=flow)
    assert [r["state"] for r in rows] == ["delivered"]
    # Shown as received on this page, the same file chosen again is a new upload, as asked.
    await page.set_input_files("#files", str(source))
    await expect(item.nth(1)).to_contain_text("received")
    assert [m for m, _ in watched.tus.requests[asked + 1 :]] == ["POST", "PATCH"]
    rows = await asyncio.to_thread(web_system.wait_for, settled(2), flow=flow)
    assert [r["state"] for r in rows] == ["delivered", "delivered"]
