"""A 1 GiB upload from Chromium, cut mid-way, resumes where the staged bytes end (DESIGN-13 §0).

The browser reaches `tradelane up` through a forwarder whose connections the test resets once the
staged file passes 512 MiB (the system's public URL is the forwarder's, so the Origin checks hold).
tus-js-client then asks the server for the offset (HEAD) and sends the rest: exactly one receipt and
one delivery with the file's SHA-256, and the PATCHes together wrote exactly 1 GiB (it resumed; it
did not start again, and Chromium's own re-send from offset 0 truncated nothing)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.servers import free_port
from tests.system import System, run_system
from tests.web.forwarder import Forwarder

GIB = 1024**3
PASSWORD = "Pw-browser-resume-1"


@pytest.fixture(scope="module")
def cut_system() -> Iterator[tuple[System, Forwarder]]:
    api_port = free_port()
    forwarder = Forwarder(api_port)
    with forwarder.running(), run_system(api_port=api_port, TRADELANE_PUBLIC_URL=forwarder.url) as system:
        yield system, forwarder


def write_big_file(path: Path, size: int) -> str:
    """`size` bytes of numbered 1 MiB blocks (each differs, so a misplaced block changes the hash)."""
    block = bytes(range(256)) * 4096
    sha = hashlib.sha256()
    with path.open("wb") as out:
        for n in range(size // len(block)):
            data = n.to_bytes(8, "big") + block[8:]
            out.write(data)
            sha.update(data)
    return sha.hexdigest()


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            sha.update(chunk)
    return sha.hexdigest()


async def test_a_1_gib_upload_cut_midway_resumes(
    browser: Browser, cut_system: tuple[System, Forwarder], tmp_path: Path
) -> None:
    system, forwarder = cut_system
    partner, endpoint, flow = "resumer", "resumer-dir", "resumer-flow"
    dest = tmp_path / "out"
    dest.mkdir()
    for args in (
        ("partner", "add", partner, "--password", PASSWORD),
        ("endpoint", "add", endpoint, "--type", "file", "--path", str(dest)),
        ("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint),
    ):
        await asyncio.to_thread(system.cli, *args)
    source = tmp_path / "big.bin"
    expected = await asyncio.to_thread(write_big_file, source, GIB)
    staged = system.home / "mailboxes" / ".partial" / "home" / partner / "upload" / source.name

    context = await browser.new_context(base_url=forwarder.url)
    try:
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto("/login")
        await page.get_by_label("Partner name or e-mail address").fill(partner)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(re.compile(r"/portal$"))
        await expect(page.locator("#upload.scripted")).to_be_attached()  # upload.js is listening
        await page.set_input_files("#files", str(source))
        # Cut every connection once half the file is staged (polled with a deadline, not a sleep).
        deadline = time.monotonic() + 600  # generous: a loaded 2-core machine moves 1 GiB slowly
        while not (staged.exists() and staged.stat().st_size >= GIB // 2):
            if time.monotonic() > deadline:
                progress = await page.locator("#progress").inner_text()
                size = staged.stat().st_size if staged.exists() else None
                raise AssertionError(f"the upload never reached 512 MiB: staged {size}, page: {progress!r}")
            await asyncio.sleep(0.05)
        forwarder.cut()
        bar = page.locator("#progress li", has_text=source.name).locator("progress")
        await expect(bar).to_have_attribute("value", str(GIB), timeout=600_000)
        rows = await asyncio.to_thread(
            system.wait_for, lambda rows: bool(rows) and rows[0]["state"] == "delivered", 600.0, flow=flow
        )
        row_text = page.locator("#recent-body tr", has_text=source.name)
        await expect(row_text).to_contain_text("delivered", timeout=30_000)
        assert problems == []
    finally:
        await context.close()

    assert forwarder.cuts == 1
    assert len(rows) == 1 and rows[0]["sha256"] == expected and rows[0]["size"] == GIB
    assert await asyncio.to_thread(sha256_of, dest / source.name) == expected
    with sqlite3.connect(system.home / "tradelane.db") as db:
        [(state, received, patches)] = db.execute(
            "SELECT state, received, patches FROM web_upload WHERE name = ?", (source.name,)
        ).fetchall()
        receipts = db.execute("SELECT count(*) FROM receipt WHERE name = ?", (source.name,)).fetchone()[0]
    assert state == "done" and receipts == 1
    assert patches >= 2 and received == GIB  # resumed: every byte written once
    audit = json.loads(
        (await asyncio.to_thread(system.cli, "audit", "--json", "--action", "upload.incomplete")).stdout
    )
    assert len([e for e in audit if e.get("target", "").endswith(source.name)]) == 1
    assert not staged.exists()
