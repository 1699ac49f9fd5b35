"""Hostile input to the portal's resumable uploads (api/web/tus.py): another login's upload id,
offsets, sizes over the partner's limit, path tricks in the metadata, requests without the session,
the CSRF token or our origin, and a second writer. Each is refused before a byte is written, and
nothing is received or left visible."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from sqlmodel import select

from api.web import tus
from core import partners
from core.db import session_scope
from core.login import LoginUser
from core.mailbox.doors import shared_doors
from core.mailbox.view import MailboxView
from core.models import Partner
from tests.tenancy import home_scope
from tests.web.portal_client import Portal, new_partner, receipts_of
from tests.web.server import WebServer, web_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    env = {"TRADELANE_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with web_server(tmp_path_factory.mktemp("hostile-tus"), env) as running:
        yield running


@pytest.fixture
def portal(server: WebServer) -> Iterator[Portal]:
    with Portal(server, new_partner()) as logged_in:
        yield logged_in


def visible_files(server: WebServer) -> list[str]:
    return sorted(p.name for p in server.home.rglob("*") if p.is_file() and "upload" in p.parts)


def test_another_logins_upload_id_is_unknown(server: WebServer, portal: Portal) -> None:
    url = portal.new_upload("mine.txt", 6)
    assert portal.patch(url, 0, b"abc").status_code == 204
    with Portal(server, new_partner()) as other:
        assert other.head(url).status_code == 404
        assert other.patch(url, 3, b"xyz").status_code == 404
        assert other.delete(url).status_code == 404
        assert other.head("/portal/uploads/not-an-id").status_code == 404
        assert other.head("/portal/uploads/" + "0" * 32).status_code == 404
    assert portal.head(url).headers["upload-offset"] == "3"  # untouched
    assert portal.patch(url, 3, b"def").status_code == 204


def test_an_upload_over_the_partners_limit_is_refused_at_creation(server: WebServer) -> None:
    with Portal(server, new_partner(max_file_bytes=1000)) as small:
        answer = small.create("big.bin", 1001)
        assert answer.status_code == 413 and "limit of 1000 bytes" in answer.json()["message"]
        assert small.client.options("/portal/uploads").headers["tus-max-size"] == "1000"
        assert small.create("fits.bin", 1000).status_code == 201
        assert small.create("huge.bin", 10**30).status_code == 400  # not a sane number of bytes
        assert receipts_of(small.name) == []


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("../download/x.txt", None),
        ("..", None),
        ("a/b.txt", None),
        ("a\\b.txt", None),
        (".hidden", None),
        ("nul\x00.txt", None),
        ("x" * 256, None),
        ("ok.txt", "upload/../download"),
        ("ok.txt", "../../other/upload"),
        ("ok.txt", "download"),
        ("ok.txt", "b2b/somebox"),
        ("report.part", None),
    ],
)
def test_metadata_cannot_name_another_place(
    server: WebServer, portal: Portal, name: str, folder: str | None
) -> None:
    answer = portal.create(name, 3, folder)
    assert answer.status_code in (400, 403, 404), answer.text
    assert answer.json()["message"]
    assert receipts_of(portal.name) == []


def test_bad_metadata_is_refused(portal: Portal) -> None:
    headers = portal.headers(**{"Upload-Length": "3"})
    for meta in ("filename !!!notbase64", "filename " + "QQ==" * 2000, "filename YQ==,filename Yg=="):
        answer = portal.client.post("/portal/uploads", headers={**headers, "Upload-Metadata": meta})
        assert answer.status_code == 400, meta


def test_no_session_no_csrf_or_another_origin_is_refused(server: WebServer, portal: Portal) -> None:
    url = portal.new_upload("guarded.txt", 3)
    with server.browser(Accept="*/*") as stranger:
        assert stranger.head(url, headers={"Tus-Resumable": "1.0.0"}).status_code == 401
        created = stranger.post("/portal/uploads", headers=portal.headers(**{"Upload-Length": "1"}))
        assert created.status_code in (401, 403)  # no session (and a token for another cookie)
    no_token = {k: v for k, v in portal.headers().items() if k != "X-CSRF-Token"}
    patch = {**no_token, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    assert portal.client.patch(url, headers=patch, content=b"abc").status_code == 403
    assert portal.client.delete(url, headers=no_token).status_code == 403
    forged = portal.patch(url, 0, b"abc", **{"X-CSRF-Token": "0" * 64})
    assert forged.status_code == 403
    cross = portal.patch(url, 0, b"abc", Origin="http://evil.example", **{"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    same_site = portal.patch(url, 0, b"abc", **{"Sec-Fetch-Site": "same-site"})
    assert same_site.status_code == 403
    assert portal.head(url).headers["upload-offset"] == "0"  # nothing written by any of them
    assert receipts_of(portal.name) == []


def test_a_second_writer_gets_423_and_the_first_loses_nothing(server: WebServer, portal: Portal) -> None:
    url = portal.new_upload("shared.bin", 10)
    with session_scope() as session:
        partner = session.exec(select(Partner).where(Partner.name == portal.name)).one()
        user = LoginUser.of(partner)
    sftp_like = MailboxView(user, shared_doors(), "127.0.0.1", "sftp")
    handle = sftp_like.resume_upload("/upload/shared.bin", 0)  # another door writes the same name
    try:
        busy = portal.patch(url, 0, b"0123456789")
        assert busy.status_code == 423 and "being uploaded" in busy.json()["message"]
    finally:
        handle.abandon()
    assert portal.patch(url, 0, b"0123456789").status_code == 204
    assert [r.size for r in receipts_of(portal.name)] == [10]


def test_a_huge_body_cannot_grow_past_the_declared_length(server: WebServer, portal: Portal) -> None:
    url = portal.new_upload("bounded.bin", 1024)
    answer = portal.patch(url, 0, os.urandom(4 * 1024 * 1024))
    assert answer.status_code == 400
    assert int(portal.head(url).headers["upload-offset"]) <= 1024
    assert receipts_of(portal.name) == []


def test_uploads_count_against_the_partners_session_limit(server: WebServer) -> None:
    name = new_partner()
    with session_scope() as session:
        scope = home_scope(session)
        partners.configure(session, scope, partners.require(session, scope, name), max_sessions=1)
    with Portal(server, name) as portal:
        first, second = portal.new_upload("one.bin", 100), portal.new_upload("two.bin", 3)
        with portal.silent_patch(server.url, first, 100, b"x" * 10):
            deadline = time.monotonic() + 15
            while first.rsplit("/", 1)[1] not in tus._running:  # the silent PATCH is in
                assert time.monotonic() < deadline
                time.sleep(0.01)
            refused = portal.patch(second, 0, b"abc")
            assert refused.status_code == 429 and "limit" in refused.json()["message"]
            assert refused.headers["retry-after"] == "1"
        deadline = time.monotonic() + 15
        while first.rsplit("/", 1)[1] in tus._running:  # the cut PATCH let go of its session
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert portal.patch(second, 0, b"abc").status_code == 204
