"""The portal's pages over real HTTP (api/web/portal.py): the upload page and its recent uploads with
their states, download/ as a list, attachments streamed, delete where allowed, names always text."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from core import accounts, partners
from core.db import session_scope
from core.mailbox import layout
from core.models import AuditEvent
from tests.b2b.web_server import forms_of, text_of
from tests.tenancy import home_scope
from tests.web.portal_client import PASSWORD, Portal, new_partner, receipts_of
from tests.web.server import WebServer, web_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    env = {"TRADELANE_FORWARDED_ALLOW_IPS": "127.0.0.1", "TRADELANE_MAX_UPLOAD_BYTES": str(10 * 1024**3)}
    with web_server(tmp_path_factory.mktemp("web-portal"), env) as running:
        yield running


def put_download(partner: str, name: str, data: bytes) -> Path:
    path = layout.home("home", partner) / "download" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_portal_opens_on_the_partners_upload_page(server: WebServer) -> None:
    with Portal(server, new_partner()) as portal:
        assert portal.client.get("/portal").text == portal.client.get("/portal/upload").text
        page = portal.client.get("/portal/upload")
        assert page.status_code == 200 and f"partner {portal.name} of account home" in text_of(page)
        text = text_of(page)
        assert "Drop files here or choose them" in text and "Files up to 10.0 GiB each" in text
        assert "No uploads yet" in text
        form = forms_of(page)["/portal/upload"]
        assert form["folder"] == "upload" and form["csrf"] == portal.csrf
        assert 'src="/static/vendor/tus-js-client/tus.min.js?v=' in page.text
        assert 'src="/static/web/upload.js?v=' in page.text


def test_recent_uploads_show_what_became_of_each_file(server: WebServer) -> None:
    with Portal(server, new_partner()) as portal:
        url = portal.new_upload('a"><img src=x onerror=alert(1)>.json', 2)
        assert portal.patch(url, 0, b"{}").status_code == 204
        fragment = portal.client.get("/portal/upload/recent")
        assert fragment.status_code == 200 and fragment.headers["cache-control"] == "no-store"
        assert fragment.text.startswith('<tbody id="recent-body">')
        assert "<img" not in fragment.text and "&lt;img src=x onerror=alert(1)&gt;.json" in fragment.text
        assert "received" in text_of(fragment)  # no data flow took it: received, never "failed"
        assert "<img" not in portal.client.get("/portal/upload").text


def test_download_lists_streams_and_deletes(server: WebServer) -> None:
    name = new_partner()
    data = os.urandom(3 * 1024 * 1024 + 3)
    put_download(name, "report é.csv", data)
    with Portal(server, name) as portal:
        page = portal.client.get("/portal/download")
        assert "report é.csv" in text_of(page) and "3.0 MiB" in text_of(page)
        [link] = [part.split('"')[0] for part in page.text.split('href="')[1:] if "/content" in part]
        answer = portal.client.get(link)
        assert (
            answer.status_code == 200
            and hashlib.sha256(answer.content).digest() == hashlib.sha256(data).digest()
        )
        assert answer.headers["content-disposition"] == (
            "attachment; filename=\"report ?.csv\"; filename*=UTF-8''report%20%C3%A9.csv"
        )
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-security-policy"] == "default-src 'none'; sandbox"
        assert answer.headers["x-content-type-options"] == "nosniff"
        [action] = [a for a in forms_of(page) if a.endswith("/delete")]
        gone = portal.client.post(action, data=forms_of(page)[action])
        assert gone.status_code == 303 and gone.headers["location"].startswith("/portal/download?deleted=")
        after = portal.client.get(gone.headers["location"])
        assert "Deleted report é.csv." in text_of(after)
        assert "Nothing to download yet" in text_of(after)
    with session_scope() as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.actor == f"partner:{name}")).all()
        seen = {(e.action, e.detail.get("protocol")) for e in events}
        assert {("download", "portal"), ("delete", "portal")} <= seen


def test_no_delete_button_where_the_partner_may_not_delete(server: WebServer) -> None:
    name = new_partner()
    with session_scope() as session:
        scope = home_scope(session)
        partner = partners.require(session, scope, name)
        partners.configure(session, scope, partner, can_delete_downloads=False)
    put_download(name, "keep.csv", b"1,2\n")
    with Portal(server, name) as portal:
        page = portal.client.get("/portal/download")
        assert "keep.csv" in text_of(page)
        assert not [a for a in forms_of(page) if a.endswith("/delete")]
        [link] = [part.split('"')[0] for part in page.text.split('href="')[1:] if "/content" in part]
        forged = link.replace("/content", "/delete")
        refused = portal.client.post(forged, data={"csrf": portal.csrf})
        assert refused.status_code == 403
        assert (layout.home("home", name) / "download" / "keep.csv").exists()


def test_another_partners_file_id_is_not_found(server: WebServer) -> None:
    owner = new_partner()
    put_download(owner, "theirs.csv", b"secret")
    with Portal(server, owner) as portal:
        page = portal.client.get("/portal/download")
        [link] = [part.split('"')[0] for part in page.text.split('href="')[1:] if "/content" in part]
    with Portal(server, new_partner()) as other:
        assert other.client.get(link).status_code == 404
        assert (
            other.client.post(link.replace("/content", "/delete"), data={"csrf": other.csrf}).status_code
            == 404
        )
        assert other.client.get("/portal/files/bm90LWFuLWlk/content").status_code == 404
    assert (layout.home("home", owner) / "download" / "theirs.csv").read_bytes() == b"secret"


def test_the_no_script_form_streams_files_in(server: WebServer) -> None:
    first, second = os.urandom(2 * 1024 * 1024 + 1), b'{"po": 2}'
    with Portal(server, new_partner()) as portal:
        page = portal.client.get("/portal/upload")
        fields = forms_of(page)["/portal/upload"]
        answer = portal.client.post(
            "/portal/upload",
            data=fields,
            files=[("files", ("big.bin", first)), ("files", ("ünï.json", second))],
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/portal/upload?received=2"
        assert "Received 2 file(s)." in text_of(portal.client.get(answer.headers["location"]))
        receipts = receipts_of(portal.name)
        assert [(r.name, r.size, r.protocol) for r in receipts] == [
            ("big.bin", len(first), "portal"),
            ("ünï.json", len(second), "portal"),
        ]
        assert receipts[0].sha256 == hashlib.sha256(first).hexdigest()


def test_an_account_user_gets_its_outboxes_not_a_mailbox(server: WebServer) -> None:
    email = "outboxes-user@home.example"
    with session_scope() as session:
        accounts.add_user(session, home_scope(session), email, password=PASSWORD, role="operator")
    with Portal(server, email) as portal:
        assert portal.client.get("/portal").headers["location"] == "/portal/b2b"
        page = portal.client.get("/portal/b2b")
        assert "This account has no B2B outboxes yet" in text_of(page)
        assert portal.client.get("/portal/b2b/nobox").status_code == 404
        assert portal.client.get("/portal/upload").headers["location"] == "/console"  # a partner's page
        refused = portal.create("po.json", 3, "b2b/nobox")
        assert refused.status_code == 403 and "outboxes" in refused.json()["message"]
        assert portal.create("po.json", 3).status_code == 400  # no folder: a user must name its outbox
