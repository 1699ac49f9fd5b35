"""The console in a real browser (headless Chromium) against `tradelane up` (the harness's one
`web_system`): an operator logs in, adds an SFTP endpoint through the generated form against the
test OpenSSH sshd, tries it (a closed port says unreachable, a wrong password says authentication),
adds a data flow, a partner uploads by REST, the transfer shows delivered with its Prefect link (the
CLI's), and Replay delivers it again; a read-only user sees the same pages without a button."""

from __future__ import annotations

import asyncio
import itertools
import re

from playwright.async_api import Page, expect

from tests.e2e.helpers import PartnerClient, delivered
from tests.endpoint_servers.sshd import OpenSSHServer
from tests.servers import free_port
from tests.system import System
from tests.web.conftest import Watched

PASSWORD = "Pw-console-browser-1"
_names = itertools.count(1)
# The layout's own, the transfers filter (a GET), and ending one's own sessions.
NOT_CHANGING = {"Menu", "Log out", "Filter", "Log out everywhere"}


async def add_user(system: System, role: str) -> str:
    email = f"console{next(_names)}-{role}@home.example"
    await asyncio.to_thread(
        system.cli, "account", "user", "add", email, "--role", role, "--password", PASSWORD
    )
    return email


async def log_in(page: Page, name: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Partner name or e-mail address").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()


async def page_buttons(page: Page) -> list[str]:
    names = [(await b.inner_text()).strip() for b in await page.get_by_role("button").all()]
    return [name for name in names if name not in NOT_CHANGING]


async def test_an_operator_sets_up_sftp_delivery_and_replays_it(
    watched: Watched, web_system: System, openssh_server: OpenSSHServer
) -> None:
    page, sshd = watched.page, openssh_server
    # The browser logs each refused answer (a probe's 4xx form page) as a console error: expected.
    watched.allowed.append("Failed to load resource")
    n = next(_names)
    partner, endpoint, flow = f"cpartner{n}", f"csftp{n}", f"cflow{n}"
    await asyncio.to_thread(web_system.cli, "partner", "add", partner, "--password", PASSWORD)
    folder = sshd.new_folder()
    operator = await add_user(web_system, "operator")
    await log_in(page, operator)
    await expect(page).to_have_url(re.compile(r"/console$"))

    # The generated SFTP form, tried with a closed port, then a wrong password, then added.
    await page.goto("/console/endpoints/new?type=sftp")
    await page.locator("#f-name").fill(endpoint)
    await page.locator("#f-setting-host-key").fill(sshd.host_key)
    await page.locator("#f-setting-host").fill(sshd.host)
    await page.locator("#f-setting-user").fill(sshd.user)
    await page.locator("#f-setting-port").fill(str(free_port()))
    await page.locator("#f-setting-path").fill(str(folder))
    await page.locator("#f-secret-password").fill("not-the-password")
    await page.get_by_role("button", name="Test these settings").click()
    await expect(page.locator(".probe")).to_contain_text(f"✗ {endpoint}: unreachable")
    # The form comes back without the secret (never rendered back): typed again.
    await page.locator("#f-setting-port").fill(str(sshd.port))
    await page.locator("#f-secret-password").fill("not-the-password")
    await page.get_by_role("button", name="Test these settings").click()
    await expect(page.locator(".probe")).to_contain_text(f"✗ {endpoint}: authentication")
    await page.locator("#f-secret-password").fill(sshd.password)
    await page.get_by_role("button", name="Test these settings").click()
    await expect(page.locator(".probe")).to_contain_text(f"✓ {endpoint} reachable")
    await page.locator("#f-secret-password").fill(sshd.password)
    await page.get_by_role("button", name="Add endpoint").click()
    await expect(page).to_have_url(re.compile(rf"/console/endpoints/{endpoint}"))
    await expect(page.locator(".flash")).to_contain_text(endpoint)
    assert sshd.password not in await page.content()
    await page.get_by_role("button", name="Test", exact=True).click()
    await expect(page.locator(".probe")).to_contain_text(f"✓ {endpoint} reachable")

    # A data flow from the partner's mailbox to it.
    await page.goto("/console/flows")
    await page.locator("#fl-name").fill(flow)
    await page.locator("#fl-source").select_option(f"mailbox:{partner}")
    await page.locator("#fl-dest").select_option(endpoint)
    await page.get_by_role("button", name="Add data flow").click()
    await expect(page).to_have_url(re.compile(rf"/console/flows/{flow}"))

    # The partner uploads by REST; the transfer is delivered, with the CLI's Prefect link.
    def upload() -> None:
        with PartnerClient(web_system, partner, PASSWORD) as client:
            client.upload("po-1.txt", b"order 1\n").raise_for_status()

    await asyncio.to_thread(upload)
    rows = await asyncio.to_thread(web_system.wait_for, delivered(1), flow=flow)
    assert (folder / "po-1.txt").read_bytes() == b"order 1\n"
    first = rows[0]
    await page.goto(f"/console/transfers?flow={flow}")
    row = page.get_by_role("row").filter(has_text="po-1.txt")
    await expect(row).to_contain_text("delivered")
    await page.get_by_role("link", name=str(first["id"]), exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("(delivered)")
    run_link = page.get_by_role("link", name=re.compile(re.escape(str(first["flow_run_id"]))))
    assert first["run_url"] and await run_link.get_attribute("href") == first["run_url"]

    # Replay: a new transfer, delivered again.
    (folder / "po-1.txt").unlink()
    await page.get_by_role("button", name="Replay").click()
    await expect(page.locator(".flash")).to_contain_text("Replayed as transfer")
    again = await asyncio.to_thread(web_system.wait_for, delivered(2), flow=flow)
    assert len(again) == 2 and (folder / "po-1.txt").read_bytes() == b"order 1\n"
    await page.reload()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("(delivered)")

    # A read-only user sees the endpoint, the flow and the transfers, and not one button.
    await page.get_by_role("button", name="Log out").click()
    await log_in(page, await add_user(web_system, "read-only"))
    for path in (
        "/console",
        "/console/partners",
        f"/console/partners/{partner}",
        "/console/endpoints",
        f"/console/endpoints/{endpoint}",
        "/console/flows",
        f"/console/flows/{flow}",
        f"/console/transfers?flow={flow}",
        f"/console/transfers/{first['id']}",
    ):
        await page.goto(path)
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert await page_buttons(page) == [], path
    await page.goto(f"/console/transfers?flow={flow}")
    await expect(page.get_by_role("row").filter(has_text="po-1.txt")).to_have_count(2)


async def test_an_operator_filters_failed_transfers_and_replays_one_once_the_destination_is_back(
    watched: Watched, web_system: System, openssh_server: OpenSSHServer
) -> None:
    page, sshd = watched.page, openssh_server
    n = next(_names)
    partner, endpoint, flow = f"fpartner{n}", f"fdown{n}", f"fflow{n}"
    folder = sshd.new_folder()
    # A destination that is down (nothing listens on its port) and a flow that does not retry.
    for args in (
        ("partner", "add", partner, "--password", PASSWORD),
        ("endpoint", "add", endpoint, "--type", "sftp", "--host", sshd.host, "--port", str(free_port()),
         "--user", sshd.user, "--password", sshd.password, "--path", str(folder),
         "--host-key", sshd.host_key),
        ("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint, "--retries", "0"),
    ):  # fmt: skip
        await asyncio.to_thread(web_system.cli, *args)

    def upload() -> None:
        with PartnerClient(web_system, partner, PASSWORD) as client:
            client.upload("po-9.txt", b"order 9\n").raise_for_status()

    await asyncio.to_thread(upload)
    rows = await asyncio.to_thread(
        web_system.wait_for, lambda rows: bool(rows) and rows[0]["state"] == "failed", 120.0, flow=flow
    )
    failed = rows[0]

    await log_in(page, await add_user(web_system, "operator"))
    await expect(page).to_have_url(re.compile(r"/console$"))
    await page.goto("/console/transfers")
    await page.locator("#t-state").select_option("failed")
    await page.locator("#t-flow").select_option(flow)
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"state=failed"))
    listed = page.locator("tbody tr")
    await expect(listed).to_have_count(1)
    await expect(listed).to_contain_text("po-9.txt")
    await expect(listed).to_contain_text("failed")
    await expect(listed.get_by_role("link", name=str(failed["id"]), exact=True)).to_be_visible()
    # The button says "Replay"; "transfer N" is for screen readers only (app.css, on every page).
    hidden = await listed.locator(".visually-hidden").bounding_box()
    assert hidden is not None and hidden["width"] <= 1 and hidden["height"] <= 1

    # The destination comes back; Replay from the filtered list delivers the file.
    await asyncio.to_thread(web_system.cli, "endpoint", "set", endpoint, "--port", str(sshd.port))
    await listed.get_by_role("button", name=f"Replay transfer {failed['id']}").click()
    await expect(page.locator(".flash")).to_contain_text("Replayed as transfer")
    rows = await asyncio.to_thread(
        web_system.wait_for, lambda rows: any(r["state"] == "delivered" for r in rows), 120.0, flow=flow
    )
    assert (folder / "po-9.txt").read_bytes() == b"order 9\n"
    [delivered_row] = [r for r in rows if r["state"] == "delivered"]
    assert delivered_row["id"] != failed["id"]
    await page.goto(f"/console/transfers?state=delivered&flow={flow}")
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("tbody tr")).to_contain_text("po-9.txt")
    # The failed one stays failed in the history: Replay adds a transfer, it rewrites nothing.
    await page.goto(f"/console/transfers?state=failed&flow={flow}")
    await expect(page.locator("tbody tr")).to_have_count(1)
