"""A small REST upload crosses to a worker thread once after its login's check, and the uploads'
disk and store work never runs in more than `UPLOAD_THREADS` threads at once (api/upload.py): more
threads than cores only passed the GIL to each other."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from api import upload
from core.endpoints.errors import EndpointError
from core.intake import Upload
from tests.api.conftest import PartnerLogin, latest_receipt, stored_files
from tests.waiting import wait_for

MakePartner = Callable[..., PartnerLogin]


class SlowWrites:
    """`upload.write_all`, each call `seconds` slower, counting the most calls at once and the first
    bytes of each batch it writes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.most = 0
        self.firsts: list[bytes] = []
        self._running = 0
        self._lock = threading.Lock()
        self._write_all = upload.write_all

    def __call__(self, started: Upload, pieces: list[bytes]) -> None:
        with self._lock:
            self._running += 1
            self.most = max(self.most, self._running)
        try:
            time.sleep(self.seconds)
            self.firsts.append(pieces[0][:8] if pieces else b"")
            self._write_all(started, pieces)
        finally:
            with self._lock:
                self._running -= 1


def test_a_small_upload_crosses_to_a_thread_once_after_the_login(
    make_partner: MakePartner, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_partner()
    folder = p.folder("upload")["id"]
    crossings: list[str] = []
    original = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        crossings.append(getattr(getattr(func, "func", func), "__qualname__", repr(func)))  # a partial's
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    response = p.upload("small.json", b'{"po": 1}', folder)
    assert response.status_code == 201, response.text
    # The token's login (a store read, before any of the body), then the upload itself.
    assert len(crossings) == 2, crossings
    assert crossings[0].endswith("get_current_login")


def test_uploads_at_once_share_a_few_threads(
    make_partner: MakePartner, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_partner()
    folder = p.folder("upload")["id"]
    # Each write long enough for the other uploads to pile up behind it.
    writes = SlowWrites(seconds=0.05)
    monkeypatch.setattr(upload, "write_all", writes)
    bodies = {f"at-once-{i}.bin": os.urandom(2048) for i in range(12)}
    statuses: dict[str, int] = {}

    def send(name: str) -> None:
        statuses[name] = p.upload(name, bodies[name], folder).status_code

    senders = [threading.Thread(target=send, args=(name,)) for name in bodies]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert statuses == dict.fromkeys(bodies, 201)
    assert 2 <= writes.most <= upload.UPLOAD_THREADS
    for name, body in bodies.items():
        assert (p.root / "upload" / name).read_bytes() == body


def test_a_slow_disk_gets_the_batches_in_order_one_at_a_time(
    make_partner: MakePartner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches received while the writer is behind wait their turn: never two writes of one file at
    once, never out of order, every byte there."""
    p = make_partner()
    writes = SlowWrites(seconds=0.03)  # the client keeps sending: batches pile up behind each
    monkeypatch.setattr(upload, "write_all", writes)
    body = b"".join(n.to_bytes(8, "big") * (upload.BATCH_BYTES // 8) for n in range(12))
    response = p.upload("in-order.bin", body)
    assert response.status_code == 201, response.text
    assert (p.root / "upload" / "in-order.bin").read_bytes() == body
    assert writes.most == 1
    assert len(writes.firsts) >= 6  # several batches, so some of them waited
    offsets = [int.from_bytes(first, "big") for first in writes.firsts if first]
    assert offsets == sorted(offsets)


def test_a_failed_batch_stops_the_ones_behind_it_and_leaves_nothing(
    make_partner: MakePartner, monkeypatch: pytest.MonkeyPatch, tradelane_home: Path
) -> None:
    p = make_partner()
    calls = [0]
    original = upload.write_all

    def failing(started: Upload, pieces: list[bytes]) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise EndpointError("upload/broken.bin: No space left on device")
        time.sleep(0.03)
        original(started, pieces)

    monkeypatch.setattr(upload, "write_all", failing)
    before = stored_files(tradelane_home)
    response = p.upload("broken.bin", os.urandom(12 * upload.BATCH_BYTES))
    assert response.status_code == 503, response.text
    assert "nothing was received" in response.json()["message"]
    assert calls[0] == 3  # nothing written past the gap
    assert not (p.root / "upload" / "broken.bin").exists()
    assert latest_receipt(p.id, "broken.bin") is None
    assert stored_files(tradelane_home) == before


def test_big_uploads_stuck_on_a_slow_disk_keep_no_small_upload_waiting(
    make_partner: MakePartner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big upload's writer thread is its own (WRITER_THREADS), not one of UPLOAD_THREADS: as many
    big uploads as there are upload threads, all stuck writing, leave small uploads going."""
    p = make_partner()
    folder = p.folder("upload")["id"]
    disk = threading.Event()
    stuck: set[str] = set()
    original = upload.write_all

    def stuck_for_big(started: Upload, pieces: list[bytes]) -> None:
        if started.name.startswith("big-"):
            stuck.add(started.name)
            disk.wait(60)
        original(started, pieces)

    monkeypatch.setattr(upload, "write_all", stuck_for_big)
    bigs = {f"big-{i}.bin": os.urandom(3 * upload.BATCH_BYTES) for i in range(upload.UPLOAD_THREADS)}
    statuses: dict[str, int] = {}

    def send(name: str) -> None:
        statuses[name] = p.upload(name, bigs[name], folder).status_code

    senders = [threading.Thread(target=send, args=(name,)) for name in bigs]
    try:
        for sender in senders:
            sender.start()
        wait_for(lambda: stuck == set(bigs), "every big upload's writer to be stuck")
        small = p.upload("small-while-stuck.json", b'{"po": 7}', folder)
        assert small.status_code == 201, small.text
        assert not statuses  # the small one went past them
    finally:
        disk.set()
        for sender in senders:
            sender.join()
    assert statuses == dict.fromkeys(bigs, 201)
    for name, body in bigs.items():
        assert (p.root / "upload" / name).read_bytes() == body
