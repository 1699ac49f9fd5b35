"""The browser pieces the harness (tests/web/conftest.py), the benchmarks (bench/web_upload.py) and
the screenshots (tests/web/screenshots.py) share: Debian's Chromium under Playwright's async API
(never `playwright install`: `executable_path` is given), and logging in through `/login`."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from playwright.async_api import Browser, Page, async_playwright

log = logging.getLogger(__name__)
CHROMIUM = "/usr/bin/chromium"


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium, closed on exit."""
    exe = shutil.which(CHROMIUM)
    assert exe, f"{CHROMIUM} is missing: run `make test-servers` (apt-get install chromium)"
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=exe, headless=True)
        log.info("chromium %s, playwright %s", launched.version, version("playwright"))
        try:
            yield launched
        finally:
            await launched.close()


async def log_in(page: Page, name: str, password: str, path: str = "/login") -> None:
    """Fill and send the one login form (a partner name or an account user's e-mail address)."""
    await page.goto(path)
    await page.get_by_label("Partner name or e-mail address").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
