"""Hostile pushes to the upload routes (DESIGN-12 §5.5, §7), over real httpx against the real API app
under uvicorn: each is refused with its status and a clear message, and changes nothing - no upload
row, receipt or transfer, and no staged byte - unless it says what it kept (a resumable offset)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.b2b.peer_site import Sender, Site, create, declare, dump, new_sender, patch, serve, sha


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from serve(tmp_path_factory.mktemp("peerpush-hostile") / "home")


@pytest.fixture
def client(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as c:
        yield c


@pytest.fixture
def sender(site: Site) -> Sender:
    return new_sender()


def _upload(client: httpx.Client, sender: Sender, data: bytes, **kwargs: object) -> str:
    made = create(client, sender, declare(sender, data, **kwargs))  # type: ignore[arg-type]
    assert made.status_code == 201, made.text
    upload: str = made.json()["upload"]
    return upload


def test_a_patch_at_a_wrong_offset_is_told_the_offset_held(client: httpx.Client, sender: Sender) -> None:
    data = os.urandom(100_000)
    upload = _upload(client, sender, data)
    before = dump()
    answer = patch(client, sender, upload, 5_000, data[5_000:])
    assert answer.status_code == 409 and answer.json()["offset"] == 0
    assert "continue at offset 0" in answer.json()["message"]
    assert dump() == before


def test_a_body_longer_than_declared_is_refused(client: httpx.Client, sender: Sender) -> None:
    data = os.urandom(50_000)
    upload = _upload(client, sender, data)
    before = dump()
    declared_long = patch(client, sender, upload, 0, data + b"more")  # Content-Length says so
    assert (
        declared_long.status_code == 400 and "goes past the declared size" in declared_long.json()["message"]
    )
    streamed_long = patch(client, sender, upload, 0, data + b"x" * 300_000, chunked=True)
    assert (
        streamed_long.status_code == 400 and "goes past the declared size" in streamed_long.json()["message"]
    )
    after = dump()
    assert after["receipt"] == before["receipt"] and after["transfer"] == before["transfer"]
    assert [size for _, size in after["staged"]] in ([], [0])  # nothing of the refused body is kept
    assert create(client, sender, declare(sender, data)).json()["offset"] == 0


def test_a_wrong_sha256_lands_nothing(client: httpx.Client, sender: Sender) -> None:
    data = os.urandom(80_000)
    body = {**declare(sender, data), "sha256": sha(b"something else")}
    body["key"] = sender.key(1, body["sha256"])
    made = create(client, sender, body)
    assert made.status_code == 201
    before = dump()
    answer = patch(client, sender, made.json()["upload"], 0, data)
    assert answer.status_code == 422
    assert "SHA-256 does not match" in answer.json()["message"]
    after = dump()
    assert after["receipt"] == before["receipt"] and after["transfer"] == before["transfer"]
    assert after["staged"] == [] or all(size == 0 for _, size in after["staged"])


def test_an_oversized_create_is_refused(client: httpx.Client, sender: Sender) -> None:
    before = dump()
    digest = sha(b"big")
    body = {"key": sender.key(1, digest), "name": "huge.bin", "size": 11 * 1024**3, "sha256": digest}
    answer = create(client, sender, body)
    assert answer.status_code == 413 and "larger than the limit" in answer.json()["message"]
    assert dump() == before


def test_an_upload_to_another_connections_uid_is_refused(client: httpx.Client, sender: Sender) -> None:
    other = new_sender()
    data = os.urandom(10_000)
    upload = _upload(client, other, data)
    before = dump()
    answer = create(client, sender, declare(other, data), uid=other.uid)
    assert (
        answer.status_code == 403
        and answer.json()["message"] == "this key does not belong to that connection"
    )
    assert patch(client, sender, upload, 0, data, uid=other.uid).status_code == 403
    # With its own connection in the path, another connection's upload is not found.
    assert patch(client, sender, upload, 0, data).status_code == 404
    assert dump() == before


@pytest.mark.parametrize("name", ["a/b.edi", "../etc/passwd", "..", ".hidden", "a\\b"])
def test_names_that_are_not_one_file_name_are_refused(
    client: httpx.Client, sender: Sender, name: str
) -> None:
    before = dump()
    answer = create(client, sender, declare(sender, b"x", name=name))
    assert answer.status_code == 400, answer.text
    assert dump() == before


def test_a_key_not_for_this_connection_is_refused(client: httpx.Client, sender: Sender) -> None:
    before = dump()
    body = declare(sender, b"data")
    body["key"] = f"someone-else/1/{body['sha256']}"
    answer = create(client, sender, body)
    assert answer.status_code == 400 and "key must be" in answer.json()["message"]
    assert dump() == before


def test_an_unsigned_patch_is_refused_before_its_body(client: httpx.Client, sender: Sender) -> None:
    data = os.urandom(20_000)
    upload = _upload(client, sender, data)
    before = dump()
    answer = patch(client, None, upload, 0, data, uid=sender.uid)
    assert answer.status_code == 401 and "not signed" in answer.json()["message"]
    assert dump() == before
