"""The browser harness: one headless Chromium for the whole pytest session, a fresh context per test,
against one `tradelane up` (`web_system`).

* Debian's Chromium (`/usr/bin/chromium`, installed by scripts/install-test-servers.sh) driven by
  Playwright's **async** API (`playwright==1.65.2`, test extra): a session-scoped sync Playwright
  leaves a loop running in the main thread and breaks every later `async def` test; the async one
  shares pytest-asyncio's session loop. Never `playwright install`: `executable_path` is given.
* Each test gets its own context (no cookies or storage leak between tests) and its page collects
  console errors and page errors; a test fails at teardown if the page logged a CSP refusal or a
  script error it did not expect.
* `web_system` trusts 127.0.0.1 as a proxy, so each test that fails logins speaks from its own
  `X-Forwarded-For` address (a ban in one test never blocks the next).
* Each page's tus requests and answers are logged (tests/web/tus_log.py) and printed under a test
  that fails ("tus requests"), so a browser upload that went wrong says what was asked and answered.
* Never `page.wait_for_function("...")`: our CSP forbids the eval it needs. Use locators and `expect`.
* Blocking helpers (`system.cli`) run through `asyncio.to_thread`, so the loop keeps serving the
  browser meanwhile.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Error, Page

from tests.system import IDLE_AFTER_LAST_USE, System, run_system, stop
from tests.web.browser import chromium
from tests.web.tus_log import TusLog

_addresses = (f"203.0.113.{n}" for n in itertools.count(10))


@pytest.fixture(scope="session")
def web_system() -> Iterator[System]:
    """One `tradelane up` for the browser tests (3 failed logins ban an address: lockout tests are short)."""
    with run_system(TRADELANE_FORWARDED_ALLOW_IPS="127.0.0.1", TRADELANE_LOCKOUT_FAILURES="3") as running:
        IDLE_AFTER_LAST_USE["web_system"] = lambda: stop(running)
        yield running


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the whole session, on pytest-asyncio's session loop."""
    async with chromium() as launched:
        yield launched


@dataclass
class Watched:
    """A page and what it reported: console errors (CSP refusals among them) and uncaught errors."""

    page: Page
    context: BrowserContext
    address: str
    tus: TusLog
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # substrings of problems a test expects

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(message.text)

    def on_error(self, error: Error) -> None:
        self.problems.append(f"page error: {error}")

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a in p for a in self.allowed)]


_TUS_LOG = pytest.StashKey[TusLog]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing browser test shows its page's tus requests beside the traceback."""
    report = yield
    log = item.stash.get(_TUS_LOG, None)
    if report.failed and log is not None:
        report.sections.append(("tus requests (as the browser saw them)", str(log)))
    return report


@pytest.fixture
async def watched(
    request: pytest.FixtureRequest, browser: Browser, web_system: System
) -> AsyncIterator[Watched]:
    """A fresh context (1280×800) speaking from an address of its own, and its page."""
    address = next(_addresses)
    context = await browser.new_context(
        base_url=web_system.api,
        viewport={"width": 1280, "height": 800},
        accept_downloads=True,
        ignore_https_errors=web_system.api.startswith("https"),
        extra_http_headers={"X-Forwarded-For": address},
    )
    page = await context.new_page()
    seen = Watched(page, context, address, TusLog(page))
    request.node.stash[_TUS_LOG] = seen.tus
    page.on("console", seen.on_console)
    page.on("pageerror", seen.on_error)
    yield seen
    await context.close()
    assert seen.unexpected() == [], f"the page reported: {seen.unexpected()}"
