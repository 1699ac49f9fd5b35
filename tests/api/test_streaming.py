"""A 300 MiB chunked upload passes through with flat server memory (the 2 GiB run is in bench/).

The server runs in this process, so the process's resident set size is the server's (plus this
client, which sends one reused 1 MiB buffer). It is sampled throughout the upload.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator

from core.config import get_settings
from tests.api.conftest import PartnerLogin, latest_receipt

MakePartner = Callable[..., PartnerLogin]
MIB = 1024 * 1024
SIZE_MIB = 300
MAX_GROWTH_MIB = 60


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def test_large_upload_streams_with_flat_memory(make_partner: MakePartner) -> None:
    p = make_partner()
    assert p.upload("warmup.bin", os.urandom(4 * MIB)).status_code == 201  # warm threads and buffers
    block = os.urandom(MIB)
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for _ in range(SIZE_MIB):
            digest.update(block)
            yield block

    baseline = rss_bytes()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = p.upload("big.bin", body())
    finally:
        done.set()
        sampler.join()
    peak = max(peak, rss_bytes())

    assert r.status_code == 201, r.text
    assert r.json()["length"] == SIZE_MIB * MIB
    assert r.json()["meta"]["sha256"] == digest.hexdigest()
    assert (p.root / "upload" / "big.bin").stat().st_size == SIZE_MIB * MIB
    receipt = latest_receipt(p.id, "big.bin")
    assert receipt is not None and receipt.sha256 == digest.hexdigest()
    growth = (peak - baseline) / MIB
    print(
        f"\n{SIZE_MIB} MiB upload: RSS {baseline / MIB:.0f} MiB -> peak {peak / MIB:.0f} MiB (+{growth:.1f})"
    )
    assert growth < MAX_GROWTH_MIB
    (p.root / "upload" / "big.bin").unlink()
    (get_settings().mailbox_root / receipt.storage_path).unlink()  # the receipt's kept copy
