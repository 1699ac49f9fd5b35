"""A small REST upload crosses to a worker thread once after its login's check, and the uploads'
disk and store work never runs in more than `UPLOAD_THREADS` threads at once (api/upload.py): more
threads than cores only passed the GIL to each other."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

from api import upload
from core.intake import Upload
from tests.api.conftest import PartnerLogin

MakePartner = Callable[..., PartnerLogin]


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
    lock = threading.Lock()
    running = [0]
    most = [0]
    original = upload.write_all

    def counted(started: Upload, pieces: list[bytes]) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.05)  # long enough for the other uploads to pile up behind it
            original(started, pieces)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(upload, "write_all", counted)
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
    assert 2 <= most[0] <= upload.UPLOAD_THREADS
    for name, body in bodies.items():
        assert (p.root / "upload" / name).read_bytes() == body
