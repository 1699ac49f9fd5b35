"""`make screenshots`: the README's pictures of the portal and the console (DESIGN-13 §13.3).

    python -m tests.web.screenshots [--out docs/screenshots]

Starts its own `tradelane up` (tests/system.py) in a throwaway home, seeds it by the CLI and the REST
API as a user would (a partner, a folder endpoint, a data flow that checks JSON, three uploads: two
delivered, one rejected; a file in the partner's `download/`), then Chromium (tests/web/browser.py)
logs in as the partner and as an operator and saves PNGs at 1280×800, and the portal once at 390×844.
Not part of `make test` (it rewrites files under docs/).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.e2e.helpers import PartnerClient
from tests.system import System, run_system
from tests.web.browser import chromium, log_in

PASSWORD = "Pw-Screenshots-2026"
PARTNER = "acme-retail"
OPERATOR = "ops@home.example"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def seed(system: System, dest: Path) -> None:
    system.cli("partner", "add", PARTNER, "--password", PASSWORD)
    system.cli("endpoint", "add", "archive", "--type", "file", "--path", str(dest))
    system.cli("flow", "add", "acme-orders", "--source", f"mailbox:{PARTNER}", "--dest", "archive",
               "--validate", "json")  # fmt: skip
    system.cli("account", "user", "add", OPERATOR, "--role", "operator", "--password", PASSWORD)
    with PartnerClient(system, PARTNER, PASSWORD) as client:
        for name, body in (
            ("purchase_order_850.json", b'{"po": "850-0001", "qty": 12}'),
            ("purchase_order_851.json", b'{"po": "850-0002", "qty": 3}'),
            ("purchase_order_852.json", b'{"po": "850-0003", "qty": '),  # cut short: rejected
        ):
            client.upload(name, body).raise_for_status()
    system.wait_for(
        lambda rows: len(rows) == 3 and all(r["state"] in ("delivered", "rejected") for r in rows)
    )
    download = system.home / "mailboxes" / "home" / PARTNER / "download"
    download.mkdir(parents=True, exist_ok=True)
    (download / "invoice_810_0001.json").write_text('{"invoice": "810-0001", "total": 1299.00}\n')


async def shoot(page: Page, path: str, out: Path, name: str) -> None:
    await page.goto(path)
    await expect(page.get_by_role("heading", level=1)).to_be_visible()
    await page.screenshot(path=str(out / f"{name}.png"))
    print(f"wrote {out / name}.png")


async def pictures(browser: Browser, system: System, out: Path) -> None:
    # The login page, then the partner's portal.
    context = await browser.new_context(base_url=system.api, viewport=DESKTOP)
    page = await context.new_page()
    await shoot(page, "/login", out, "login")
    await log_in(page, PARTNER, PASSWORD)
    await expect(page).to_have_url(re.compile(r"/portal$"))
    await page.goto("/portal/upload")
    await expect(page.locator("#recent-body tr", has_text="purchase_order_852.json")).to_contain_text(
        "rejected"
    )
    await page.screenshot(path=str(out / "portal-upload.png"))
    print(f"wrote {out / 'portal-upload'}.png")
    await shoot(page, "/portal/download", out, "portal-download")
    await context.close()

    # The same portal on a phone.
    context = await browser.new_context(base_url=system.api, viewport=PHONE)
    page = await context.new_page()
    await log_in(page, PARTNER, PASSWORD)
    await expect(page).to_have_url(re.compile(r"/portal$"))
    await shoot(page, "/portal/upload", out, "portal-phone")
    await context.close()

    # The operator's console.
    context = await browser.new_context(base_url=system.api, viewport=DESKTOP)
    page = await context.new_page()
    await log_in(page, OPERATOR, PASSWORD)
    await expect(page).to_have_url(re.compile(r"/console$"))
    await shoot(page, "/console", out, "console-overview")
    await shoot(page, "/console/endpoints/new?type=sftp", out, "console-endpoint-form")
    await shoot(page, "/console/transfers", out, "console-transfers")
    await context.close()


async def run(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp, run_system() as system:
        await asyncio.to_thread(seed, system, Path(tmp))
        async with chromium() as browser:
            await pictures(browser, system, out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args.out))


if __name__ == "__main__":
    main()
