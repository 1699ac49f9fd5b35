"""AS2's deferred work on one store shared by several API processes (issue 15 part 4): an async MDN
we owe a partner is posted by exactly one of the workers that find it due, on PostgreSQL and SQLite."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.as2 import mdn as mdns
from core.as2 import worker
from core.db import session_scope
from core.models import As2Message, utcnow
from tests.migration_store import store  # noqa: F401  (the fixture: a store on each database)


class HeldMdnUrl:
    """A partner's MDN URL on 127.0.0.1 that counts POSTs and holds the first one open until
    `release` is set, so a second worker sweeps while the first is still posting."""

    def __init__(self) -> None:
        self.posts = 0
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        held = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                held.posts += 1
                if held.posts == 1:
                    held.first_arrived.set()
                    held.release.wait(timeout=60)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mdn"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mdn_url(store: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldMdnUrl]:  # noqa: F811
    monkeypatch.setenv("TRADELANE_AS2_ALLOW_PRIVATE_MDN_URLS", "true")
    server = HeldMdnUrl()
    try:
        yield server
    finally:
        server.close()


def owed_mdn(url: str) -> int:
    """A received message whose async MDN we owe, due now; its row id."""
    with session_scope() as session:
        row = As2Message(
            account_id=1,
            direction="in",
            message_id="<claims-1@partner>",
            org_as2_id="TRADELANE",
            partner_as2_id="PARTNER",
            status="received",
            mdn_mode="async",
            mdn_url=url,
            mdn_status="pending",
            mdn=mdns.to_text({"Content-Type": "text/plain"}, b"the MDN"),
            next_attempt_at=utcnow(),
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def test_an_owed_mdn_is_posted_by_one_of_two_workers(mdn_url: HeldMdnUrl) -> None:
    row_id = owed_mdn(mdn_url.url)
    assert worker.due_mdns() == [row_id]
    first = threading.Thread(target=worker.sweep)
    first.start()
    try:
        assert mdn_url.first_arrived.wait(timeout=60), "the first worker never posted the MDN"
        # A second API process's worker sweeps while the first is posting: the row is taken.
        assert worker.due_mdns() == []
        assert mdns.deliver(row_id) is False
    finally:
        mdn_url.release.set()
        first.join(timeout=60)
    assert mdn_url.posts == 1
    with session_scope() as session:
        row = session.get(As2Message, row_id)
        assert row is not None
        assert (row.mdn_status, row.attempts, row.next_attempt_at) == ("sent", 1, None)
    assert mdns.deliver(row_id) is False  # sent: delivering it again posts nothing
    assert mdn_url.posts == 1
