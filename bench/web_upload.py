"""A browser upload through the portal (tus) against `curl` to the REST API, same file, same run,
one `tradelane up` (DESIGN-13 §13.4).

    python -m bench.web_upload            # 1 GiB
    python -m bench.web_upload --quick    # 64 MiB
    python -m bench.web_upload --size-mib 256 --chunk-mib 100

* anchor: `curl -T FILE -X POST` to `/api/folders/<upload>/files` (streamed, the README's REST
  upload), timed to its answer; run before and after the browser, the mean counts.
* measured: headless Chromium (tests/web/browser.py, as the browser tests start it) logged in at
  `/login`, choosing the same bytes (a hard link under another name) in `/portal`: time from
  `set_input_files` to the row's `<progress>` at `max` (tus-js-client's last PATCH answered: the
  file is received), and, separately, to the recent-uploads row saying `received` (refreshed every
  5 s by upload.js, so that figure is coarse).
* ratio = anchor time / browser time; goal ≥ 0.7.
* memory: the API process (`up` itself serves the API) sampled every 50 ms from /proc during each
  upload (not during its login: one argon2 password check takes 64 MiB for a moment); its peak
  growth over the RSS before that upload, with its anonymous part ("flat" = within 32 MiB).

No data flow takes the files (a delivery would compete for the 2 cores with the next upload).
On a busy machine the ratio says little: both sides want a core.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.async_api import expect

from tests.system import System, run_system
from tests.web.browser import chromium, log_in

MIB = 1024 * 1024
PASSWORD = "Pw-bench-web-upload-1"
PARTNER = "benchweb"
FLAT_KIB = 32 * 1024


FIELDS = ("VmRSS", "RssAnon", "RssFile")


def rss_kib(pid: int) -> dict[str, int]:
    """The process's resident memory (KiB): all, anonymous (heap: what holding a file would grow),
    and file-backed (mapped files)."""
    found = dict.fromkeys(FIELDS, 0)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in found:
            found[key] = int(value.split()[0])
    return found


@contextmanager
def rss_growth(pid: int) -> Iterator[Callable[[], dict[str, int]]]:
    """Sample `pid`'s memory every 50 ms while the block runs; yields a getter of each field's peak
    growth over its value before the block (KiB)."""
    base = rss_kib(pid)
    peak = dict(base)
    done = threading.Event()

    def take() -> None:
        for key, value in rss_kib(pid).items():
            peak[key] = max(peak[key], value)

    def sample() -> None:
        while not done.wait(0.05):
            take()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: {key: peak[key] - base[key] for key in FIELDS}
    finally:
        done.set()
        sampler.join()
        take()


def shown(growth: dict[str, int]) -> str:
    mib = {key: value / 1024 for key, value in growth.items()}
    return f"{mib['VmRSS']:.1f} MiB (anon {mib['RssAnon']:.1f}, file {mib['RssFile']:.1f})"


def write_file(path: Path, size: int) -> str:
    """`size` bytes of numbered 1 MiB blocks, written once; their SHA-256."""
    block = bytes(range(256)) * 4096
    sha = hashlib.sha256()
    with path.open("wb") as out:
        for n in range(size // MIB):
            data = n.to_bytes(8, "big") + block[8:]
            out.write(data)
            sha.update(data)
    return sha.hexdigest()


def upload_folder_id(system: System) -> tuple[str, str]:
    """The partner's bearer token and its `upload/` folder id, as the README's REST example gets them."""
    with httpx.Client(base_url=system.api, timeout=30) as http:
        answer = http.post(
            "/api/authentication", data={"grant_type": "password", "username": PARTNER, "password": PASSWORD}
        )
        answer.raise_for_status()
        token = answer.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        home = http.get("/api/folders", headers=auth).json()["resources"][0]["id"]
        children = http.get(f"/api/folders/{home}/children", headers=auth).json()["resources"]
    return token, next(c["id"] for c in children if c.get("subspace") == "upload")


def curl_upload(system: System, source: Path, name: str) -> tuple[float, dict[str, int]]:
    """Seconds to curl's answer, and the API's memory growth meanwhile (logging in is not counted:
    a password check alone costs argon2's 64 MiB for a moment)."""
    token, folder = upload_folder_id(system)
    assert system.proc is not None
    with rss_growth(system.proc.pid) as grew:
        began = time.perf_counter()
        out = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(source), "-X", "POST",
             "-H", f"Authorization: Bearer {token}", "-H", f"Content-Disposition: attachment;filename={name}",
             "-H", "Content-Type: application/octet-stream", f"{system.api}/api/folders/{folder}/files"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        took = time.perf_counter() - began
    assert out.stdout.startswith("2"), f"curl upload answered {out.stdout}: {out.stderr}"
    return took, grew()


async def browser_upload(system: System, source: Path, size: int) -> tuple[float, float, dict[str, int]]:
    """Seconds to the progress bar at max, and to the row's `received`; the API's memory growth
    from choosing the file to `received` (the login before is not counted)."""
    assert system.proc is not None
    async with chromium() as browser:
        context = await browser.new_context(base_url=system.api, viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        await log_in(page, PARTNER, PASSWORD)
        await expect(page).to_have_url(re.compile(r"/portal$"))
        await expect(page.locator("#upload.scripted")).to_be_attached()  # upload.js is listening
        with rss_growth(system.proc.pid) as grew:
            began = time.perf_counter()
            await page.set_input_files("#files", str(source))
            bar = page.locator("#progress li", has_text=source.name).locator("progress")
            await expect(bar).to_have_attribute("value", str(size), timeout=3_600_000)
            sent = time.perf_counter() - began
            row = page.locator("#recent-body tr", has_text=source.name)
            await expect(row).to_contain_text("received", timeout=600_000)
            received = time.perf_counter() - began
        growth = grew()
        await context.close()
        assert problems == [], problems
    return sent, received, growth


def staged_sha(system: System, name: str) -> str:
    path = system.home / "mailboxes" / "home" / PARTNER / "upload" / name
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            sha.update(chunk)
    return sha.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="64 MiB")
    parser.add_argument("--chunk-mib", type=int, default=0, help="PORTAL_CHUNK_BYTES in MiB (0: one PATCH)")
    args = parser.parse_args()
    size = (64 if args.quick else args.size_mib) * MIB
    env = {"TRADELANE_PORTAL_CHUNK_BYTES": str(args.chunk_mib * MIB)}
    with tempfile.TemporaryDirectory(prefix="bench-web-upload-") as tmp, run_system(**env) as system:
        assert system.proc is not None
        system.cli("partner", "add", PARTNER, "--password", PASSWORD)
        source = Path(tmp) / "anchor.bin"
        expected = write_file(source, size)
        portal_copy = Path(tmp) / "portal.bin"
        portal_copy.hardlink_to(source)  # the same bytes under the name the portal will show
        pid = system.proc.pid
        print(f"{size // MIB} MiB, chunk {args.chunk_mib or 'whole file'} MiB, API pid {pid}")

        idle = rss_kib(pid)["RssAnon"]
        before, first_rss = curl_upload(system, source, "anchor-1.bin")
        sent, received, browser_rss = asyncio.run(browser_upload(system, portal_copy, size))
        after, second_rss = curl_upload(system, source, "anchor-2.bin")
        curl_rss = [first_rss, second_rss]
        settled = rss_kib(pid)["RssAnon"]
        for name in ("anchor-1.bin", "portal.bin", "anchor-2.bin"):
            assert staged_sha(system, name) == expected, f"{name}: SHA-256 differs"

    anchor = (before + after) / 2
    mib_s = size / MIB
    print(f"curl  (REST)  : {before:.2f} s, {after:.2f} s  (mean {anchor:.2f} s, {mib_s / anchor:.0f} MiB/s)")
    print(f"portal (tus)  : {sent:.2f} s to progress at max ({mib_s / sent:.0f} MiB/s), "
          f"{received:.2f} s to 'received'")  # fmt: skip
    print(f"ratio = {anchor / sent:.2f}  (anchor / browser; goal ≥ 0.7)")
    flat = "flat" if max(g["RssAnon"] for g in (browser_rss, *curl_rss)) <= FLAT_KIB else "NOT flat"
    print(f"API peak RSS growth: curl {shown(curl_rss[0])}, {shown(curl_rss[1])}")
    print(f"                     browser {shown(browser_rss)}")
    print(f"anonymous memory {flat} (within 32 MiB); idle {idle / 1024:.1f} MiB before the three uploads, "
          f"{settled / 1024:.1f} MiB after")  # fmt: skip


if __name__ == "__main__":
    main()
