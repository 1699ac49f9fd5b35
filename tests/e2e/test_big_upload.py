"""A 2 GiB upload streams through `tradelane up` with flat memory and lands byte-exact."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.e2e.helpers import PartnerClient, unique
from tests.system import System

GIB = 1024**3
CHUNK = 1024 * 1024


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_two_gib_upload_streams_with_flat_memory(system: System) -> None:
    name = unique("big")
    system.cli("partner", "add", name, "--password", "big-upload-Pass-1")
    client = PartnerClient(system, name, "big-upload-Pass-1")
    client.http.timeout = httpx.Timeout(300)
    upload_id = client.folder_ids()["upload"]
    assert system.proc is not None
    pid = system.proc.pid
    # Warm up the upload path once so one-time allocations are not counted as growth.
    assert client.upload("warm.bin", b"x" * CHUNK, upload_id).status_code == 201
    baseline = _rss_kib(pid)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kib(pid))
            time.sleep(0.02)

    expected = hashlib.sha256()
    blocks = [bytes([i]) * CHUNK for i in range(7)]

    def body() -> Iterator[bytes]:
        for i in range(2 * GIB // CHUNK):
            block = blocks[i % 7]
            expected.update(block)
            yield block

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        response = client.upload("two-gib.bin", body(), upload_id)
    finally:
        done.set()
        sampler.join()
    assert response.status_code == 201, response.text
    resource = response.json()
    assert resource["length"] == 2 * GIB
    assert resource["meta"]["sha256"] == expected.hexdigest()
    growth_mib = (peak[0] - baseline) / 1024
    assert growth_mib < 100, f"server RSS grew {growth_mib:.0f} MiB during a 2 GiB upload"
    stored = system.home / "mailboxes" / "home" / name / "upload" / "two-gib.bin"
    assert stored.stat().st_size == 2 * GIB
    # upload/ holds a link to the receipt's kept copy: free both (nothing carries this file).
    for kept in (system.home / "mailboxes" / ".store").glob("*/*"):
        if os.path.samestat(kept.stat(), stored.stat()):
            kept.unlink()
    stored.unlink()
    client.close()
