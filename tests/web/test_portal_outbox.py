"""An account user's portal against `tradelane up`: its B2B outbox listed, a file uploaded into it by
tus (and by the no-script form) carried to the receiver's bucket, and shown in its recent uploads."""

from __future__ import annotations

import os

import pytest

from tests.b2b.outbox_doors import PASSWORD, Pair, new_pair
from tests.b2b.web_server import forms_of, text_of
from tests.system import System
from tests.web.portal_client import Portal
from tests.web.server import WebServer


@pytest.fixture
def up(outbox_system: System) -> System:
    return outbox_system  # the outbox tests' shared `up` (tests/b2b/outbox_system.py)


@pytest.fixture
def pair(up: System, moto_server: str) -> Pair:
    made = new_pair(up, moto_server)
    made.accept()
    return made


def test_a_user_sends_a_file_through_its_outbox_from_the_browser(up: System, pair: Pair) -> None:
    data = os.urandom(300_000)
    with Portal(WebServer(up.api, up.home), pair.email, PASSWORD) as portal:
        outboxes = portal.client.get("/portal/b2b")
        assert "orders" in text_of(outboxes)
        page = portal.client.get("/portal/b2b/orders")
        assert page.status_code == 200
        form = forms_of(page)["/portal/upload?outbox=orders"]
        assert form["folder"] == "b2b/orders"
        url = portal.new_upload_in("po.bin", len(data), "b2b/orders")
        assert portal.patch(url, 0, data[:100_000]).status_code == 204
        assert portal.patch(url, 100_000, data[100_000:]).status_code == 204
        assert pair.landed("po.bin") == data
        # The no-script form sends into the same outbox.
        posted = portal.client.post(
            "/portal/upload?outbox=orders", data=form, files=[("files", ("invoice.bin", b"inv-1"))]
        )
        assert posted.status_code == 303 and posted.headers["location"] == "/portal/b2b/orders?received=1"
        assert pair.landed("invoice.bin") == b"inv-1"
        recent = text_of(portal.client.get("/portal/upload/recent"))
        assert "po.bin" in recent and "invoice.bin" in recent
