"""The web's login in a real browser (headless Chromium) against `tradelane up`: log in and out,
lockout, the session ended by a new password, and CSRF refusals — with the page's CSP enforced by
the browser (the harness fails a test whose page reports a CSP refusal or a script error)."""

from __future__ import annotations

import asyncio
import itertools
import re

from playwright.async_api import Page, expect

from tests.system import System
from tests.web.conftest import Watched

PASSWORD = "Pw-browser-login-1"
_names = itertools.count(1)


async def add_partner(system: System) -> str:
    name = f"browser{next(_names)}"
    await asyncio.to_thread(system.cli, "partner", "add", name, "--password", PASSWORD)
    return name


async def add_user(system: System, role: str = "operator") -> str:
    email = f"browser{next(_names)}@home.example"
    await asyncio.to_thread(
        system.cli, "account", "user", "add", email, "--role", role, "--password", PASSWORD
    )
    return email


async def log_in(page: Page, name: str, password: str = PASSWORD, path: str = "/login") -> None:
    await page.goto(path)
    await page.get_by_label("Partner name or e-mail address").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()


async def test_a_partner_logs_in_sees_who_it_is_and_logs_out(watched: Watched, web_system: System) -> None:
    page, partner = watched.page, await add_partner(web_system)
    await page.goto("/portal")  # not logged in: the login page, coming back here after
    await expect(page).to_have_url(re.compile(r"/login\?next=/portal$"))
    await log_in(page, partner, path=page.url)
    await expect(page).to_have_url(re.compile(r"/portal$"))
    await expect(page.locator(".whoami")).to_contain_text(f"partner {partner} of account home")
    await expect(page.get_by_role("navigation", name="Main")).to_contain_text(partner)
    cookies = {c["name"]: c for c in await watched.context.cookies()}
    session = cookies["tl_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert cookies["tl_csrf"]["httpOnly"] and cookies["tl_csrf"]["sameSite"] == "Strict"

    await page.get_by_role("button", name="Log out").click()
    await expect(page.locator(".notice")).to_have_text("You are logged out.")
    await page.goto("/portal")
    await expect(page).to_have_url(re.compile(r"/login\?next=/portal"))
    # The old cookie value, put back by hand, is refused by the server.
    await watched.context.add_cookies([{**session}])
    await page.goto("/portal")
    await expect(page).to_have_url(re.compile(r"/login\?next=/portal&ended=1$"))
    await expect(page.locator(".notice")).to_have_text("Your session ended: log in again.")


async def test_an_account_user_lands_on_the_console(watched: Watched, web_system: System) -> None:
    page, user = watched.page, await add_user(web_system)
    await log_in(page, user)
    await expect(page).to_have_url(re.compile(r"/console$"))
    await expect(page.locator(".whoami")).to_contain_text(f"operator user {user} of account home")
    await expect(page.get_by_role("link", name="Console")).to_have_attribute("aria-current", "page")


async def test_a_wrong_password_shows_an_error_and_locks_the_address_out(
    watched: Watched, web_system: System
) -> None:
    page, partner = watched.page, await add_partner(web_system)
    for _ in range(3):  # TRADELANE_LOCKOUT_FAILURES=3 on web_system
        await log_in(page, partner, "not the password")
        await expect(page.get_by_role("alert")).to_have_text("wrong name or password")
        await expect(page.get_by_label("Partner name or e-mail address")).to_have_value(partner)
    await log_in(page, partner)  # the right password, from the banned address
    await expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"too many failed logins from your address: try again in \d+ s")
    )
    # The browser logs each refused answer (401, 429) as a console error: expected here.
    watched.allowed.append("status of 4")


async def test_a_new_password_ends_the_browsers_session(watched: Watched, web_system: System) -> None:
    page, partner = watched.page, await add_partner(web_system)
    await log_in(page, partner)
    await expect(page).to_have_url(re.compile(r"/portal$"))
    await asyncio.to_thread(web_system.cli, "partner", "set", partner, "--password", "Pw-browser-login-2")
    await page.reload()
    await expect(page).to_have_url(re.compile(r"/login\?next=/portal&ended=1$"))
    await log_in(page, partner, "Pw-browser-login-2", path=page.url)
    await expect(page).to_have_url(re.compile(r"/portal$"))


async def test_a_forged_csrf_token_is_refused(watched: Watched, web_system: System) -> None:
    page = watched.page
    await log_in(page, await add_partner(web_system))
    await expect(page).to_have_url(re.compile(r"/portal$"))
    # page.evaluate is not subject to the page's CSP (it is the test, not the page, running it).
    await page.evaluate(
        "document.querySelector('form[action=\"/logout\"] input[name=csrf]').value = 'f'.repeat(64)"
    )
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "the form expired or came from another site: reload the page"
    )
    await page.goto("/portal")  # still logged in: the forged post did nothing
    await expect(page).to_have_url(re.compile(r"/portal$"))
    watched.allowed.append("status of 403")


async def test_a_cross_site_form_post_is_refused(watched: Watched, web_system: System) -> None:
    """An attacker's page on another site (and one on our host but another port: same site, other
    origin) auto-submits a form to /logout in the logged-in browser: refused, still logged in."""
    page = watched.page
    await log_in(page, await add_partner(web_system))
    await expect(page).to_have_url(re.compile(r"/portal$"))
    port = web_system.api.rsplit(":", 1)[1]
    attack = (
        f'<form id="f" method="post" action="{web_system.api}/logout"><input name="csrf" value="x"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    for evil in ("http://localhost:1/attack", "http://127.0.0.1:1/attack"):
        await page.route(evil, lambda route: route.fulfill(content_type="text/html", body=attack))
        async with page.expect_response(f"{web_system.api}/logout") as answer:
            await page.goto(evil)
        assert (await answer.value).status == 403, evil
        await page.goto(f"http://127.0.0.1:{port}/portal")
        await expect(page).to_have_url(re.compile(r"/portal$"))
    watched.allowed.append("status of 403")


NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
UNLABELLED = (
    "Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))"
    ".filter(el => el.labels.length === 0 && !el.getAttribute('aria-label')).map(el => el.name)"
)


async def test_the_login_page_is_labelled_and_fits_a_phone(watched: Watched) -> None:
    page = watched.page
    for width, height in ((1280, 800), (390, 844)):
        await page.set_viewport_size({"width": width, "height": height})
        await page.goto("/login")
        assert await page.evaluate(UNLABELLED) == []
        assert await page.evaluate(NO_SIDEWAYS_SCROLL), width
    # Keyboard only: the skip link first, the product's name, then the name, the password and the button.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="tradelane")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Partner name or e-mail address")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Password")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Log in")).to_be_focused()


async def test_on_a_phone_the_menu_folds_behind_its_button(watched: Watched, web_system: System) -> None:
    page = watched.page
    await page.set_viewport_size({"width": 390, "height": 844})
    await log_in(page, await add_partner(web_system))
    await expect(page).to_have_url(re.compile(r"/portal$"))
    menu = page.get_by_role("button", name="Menu")
    logout = page.get_by_role("button", name="Log out")
    await expect(menu).to_have_attribute("aria-expanded", "false")
    await expect(logout).to_be_hidden()
    await menu.click()
    await expect(menu).to_have_attribute("aria-expanded", "true")
    await expect(logout).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(menu).to_have_attribute("aria-expanded", "false")
    await expect(menu).to_be_focused()
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    # On a wide screen there is no menu button: the navigation is always there.
    await page.set_viewport_size({"width": 1280, "height": 800})
    await expect(menu).to_be_hidden()
    await expect(logout).to_be_visible()
