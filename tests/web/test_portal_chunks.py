"""`TRADELANE_PORTAL_CHUNK_BYTES`: Chromium sends a file in requests of that size (tus PATCHes), each
continuing where the last ended, and the file is taken in once with its SHA-256. Against the API app
in this process (no Prefect needed: the receipt is the point)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Request, expect
from sqlmodel import select

from core.db import session_scope
from core.models import WebUpload
from tests.web.portal_client import PASSWORD, new_partner, receipts_of
from tests.web.server import WebServer, web_server

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    env = {"TRADELANE_PORTAL_CHUNK_BYTES": str(CHUNK)}
    with web_server(tmp_path_factory.mktemp("web-chunks"), env) as running:
        yield running


async def test_a_file_goes_in_parts_of_the_chunk_size(
    browser: Browser, server: WebServer, tmp_path: Path
) -> None:
    partner = await asyncio.to_thread(new_partner, "chunks")
    data = os.urandom(3 * CHUNK + 100)
    source = tmp_path / "parts.bin"
    source.write_bytes(data)
    context = await browser.new_context(base_url=server.url)
    patches: list[str] = []

    def seen(request: Request) -> None:
        if request.method == "PATCH":
            patches.append(request.headers["upload-offset"])

    try:
        page = await context.new_page()
        page.on("request", seen)
        await page.goto("/login")
        await page.get_by_label("Partner name or e-mail address").fill(partner)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(re.compile(r"/portal$"))
        await expect(page.locator("#upload.scripted")).to_be_attached()  # upload.js is listening
        await expect(page.locator("#upload")).to_have_attribute("data-chunk", str(CHUNK))
        await page.set_input_files("#files", str(source))
        bar = page.locator("#progress li", has_text=source.name).locator("progress")
        await expect(bar).to_have_attribute("value", str(len(data)))
    finally:
        await context.close()
    assert patches == [str(n * CHUNK) for n in range(4)]
    [receipt] = await asyncio.to_thread(receipts_of, partner)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest() and receipt.size == len(data)
    with session_scope() as session:
        [row] = session.exec(select(WebUpload).where(WebUpload.name == source.name)).all()
        assert row.patches == 4 and row.received == len(data) and row.receipt_id == receipt.id
