"""Hostile input to the portal's no-script upload (POST /portal/upload, api/web/fallback.py): a file
before the CSRF token, another origin, a forged token, a name that climbs out of upload/, a file
over the partner's limit, a body that is not multipart. Nothing is received, nothing stays staged."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from core.mailbox import layout
from tests.web.portal_client import Portal, new_partner, receipts_of
from tests.web.server import WebServer, web_server

BOUNDARY = "----tradelane-test-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    env = {"TRADELANE_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with web_server(tmp_path_factory.mktemp("hostile-form"), env) as running:
        yield running


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post(portal: Portal, content: bytes, **headers: str) -> int:
    sent = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **headers}
    return portal.client.post("/portal/upload", content=content, headers=sent).status_code


def nothing_left(name: str) -> bool:
    return not list(layout.root().rglob("sneaky*")) and receipts_of(name) == []


@pytest.fixture
def portal(server: WebServer) -> Iterator[Portal]:
    with Portal(server, new_partner(max_file_bytes=1024)) as logged_in:
        yield logged_in


def test_a_file_before_the_token_is_refused_unwritten(portal: Portal) -> None:
    content = body(part("files", b"x" * 100, "sneaky.txt"), part("csrf", portal.csrf.encode()))
    assert post(portal, content) == 403
    assert nothing_left(portal.name)


def test_a_forged_token_or_another_origin_is_refused(portal: Portal) -> None:
    forged = body(part("csrf", b"0" * 64), part("files", b"abc", "sneaky.txt"))
    assert post(portal, forged) == 403
    good = body(part("csrf", portal.csrf.encode()), part("files", b"abc", "sneaky.txt"))
    assert post(portal, good, Origin="http://evil.example") == 403
    assert post(portal, good, **{"Sec-Fetch-Site": "cross-site"}) == 403
    assert nothing_left(portal.name)


CLIMBERS = ["../download/sneaky.txt", "..", ".sneaky", "sneaky.part", "sneaky\\\\x"]


@pytest.mark.parametrize("filename", CLIMBERS)
def test_names_that_leave_upload_are_refused(portal: Portal, filename: str) -> None:
    content = body(part("csrf", portal.csrf.encode()), part("files", b"abc", filename))
    assert post(portal, content) == 400
    assert nothing_left(portal.name)


def test_another_folder_in_the_form_is_refused(portal: Portal) -> None:
    content = body(
        part("csrf", portal.csrf.encode()), part("folder", b"download"), part("files", b"abc", "sneaky.txt")
    )
    assert post(portal, content) == 400
    assert nothing_left(portal.name)


def test_a_file_over_the_limit_is_refused_and_dropped(portal: Portal) -> None:
    content = body(part("csrf", portal.csrf.encode()), part("files", os.urandom(4096), "sneaky.bin"))
    assert post(portal, content) == 413
    assert nothing_left(portal.name)


def test_only_multipart_is_read(portal: Portal) -> None:
    answer = portal.client.post("/portal/upload", data={"csrf": portal.csrf})
    assert answer.status_code == 415
    assert post(portal, b"--" + BOUNDARY.encode() + b"\r\ngarbage") in (400, 303)
    assert nothing_left(portal.name)
