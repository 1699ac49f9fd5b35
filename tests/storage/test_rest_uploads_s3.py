"""REST uploads into an S3 storage (moto): streamed into a multipart upload that becomes the kept
object only when the body is complete; a body past the limit or cut off leaves no object, no
unfinished multipart upload and no receipt."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlmodel import select

from core import partners
from core.db import session_scope
from core.models import Receipt
from tests.servers import moto_client
from tests.storage.conftest import PREFIX, Store, s3_env
from tests.tenancy import home_scope
from tests.web.server import WebServer, web_server

MIB = 1024 * 1024
PASSWORD = "rest-S3-Pass-2026"


@pytest.fixture(scope="module")
def api(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, Store]]:
    bucket = f"tl-rest-{secrets.token_hex(4)}"
    s3 = moto_client(moto_server)
    s3.create_bucket(Bucket=bucket)
    env = s3_env(moto_server, bucket)
    home = tmp_path_factory.mktemp("rest-s3") / "home"
    with web_server(home, env) as server:
        with session_scope() as session:
            partner = partners.add(session, home_scope(session), "acme", password=PASSWORD)
            partner.max_file_bytes = 12 * MIB
            session.add(partner)
        yield server, Store(home, home / "out", bucket, env, s3)
    s3.close()


def login(client: httpx.Client) -> tuple[dict[str, str], str]:
    answer = client.post(
        "/api/authentication", data={"grant_type": "password", "username": "acme", "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    auth = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    home_id = client.get("/api/folders", headers=auth).json()["resources"][0]["id"]
    children = client.get(f"/api/folders/{home_id}/children", headers=auth).json()["resources"]
    return auth, next(f["id"] for f in children if f["subspace"] == "upload")


def receipts() -> list[Receipt]:
    with session_scope() as session:
        return list(session.exec(select(Receipt)).all())


def test_a_rest_upload_is_streamed_into_the_bucket(api: tuple[WebServer, Store]) -> None:
    server, store = api
    data = secrets.token_bytes(10 * MIB)  # more than a part: a multipart upload
    with httpx.Client(base_url=server.url, timeout=60) as client:
        auth, upload = login(client)
        answer = client.post(
            f"/api/folders/{upload}/files",
            content=data,
            headers={**auth, "Content-Disposition": "attachment; filename=big.bin"},
        )
    assert answer.status_code == 201, answer.text
    (receipt,) = [r for r in receipts() if r.name == "big.bin"]
    body = store.s3.get_object(Bucket=store.bucket, Key=f"{PREFIX}/{receipt.storage_path}")["Body"].read()
    assert body == data and receipt.size == len(data)
    assert store.multipart_uploads() == []


def test_a_body_past_the_limit_leaves_no_object_and_no_receipt(api: tuple[WebServer, Store]) -> None:
    server, store = api
    before = (store.kept_keys(), len(receipts()))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        auth, upload = login(client)

        def body() -> Iterator[bytes]:  # no Content-Length: the limit is met mid-stream
            for _ in range(20):
                yield b"y" * MIB

        answer = client.post(
            f"/api/folders/{upload}/files",
            content=body(),
            headers={**auth, "Content-Disposition": "attachment; filename=too-big.bin"},
        )
    assert answer.status_code == 413, answer.text
    assert (store.kept_keys(), len(receipts())) == before
    assert store.multipart_uploads() == []


def test_a_cut_off_body_leaves_no_object_and_no_receipt(api: tuple[WebServer, Store]) -> None:
    server, store = api
    before = (store.kept_keys(), len(receipts()))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        auth, upload = login(client)
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    assert host is not None and port is not None
    with socket.create_connection((host, port)) as sock:
        head = (
            f"POST /api/folders/{upload}/files HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {auth['Authorization']}\r\nContent-Length: {11 * MIB}\r\n"
            "Content-Disposition: attachment; filename=cut.bin\r\n\r\n"
        )
        sock.sendall(head.encode())
        for _ in range(9):  # past the first part: the multipart upload has begun
            sock.sendall(b"z" * MIB)
        deadline = time.monotonic() + 30
        while not store.multipart_uploads():
            assert time.monotonic() < deadline, "the upload never reached the bucket"
            time.sleep(0.05)
    # The connection is gone: the server aborts the multipart upload and records nothing.
    deadline = time.monotonic() + 30
    while store.multipart_uploads():
        assert time.monotonic() < deadline, "the cut-off upload was not aborted"
        time.sleep(0.05)
    assert (store.kept_keys(), len(receipts())) == before


def test_rest_lists_upload_from_the_store_and_download_from_the_bucket(api: tuple[WebServer, Store]) -> None:
    server, store = api
    key = f"{PREFIX}/home/acme/download/invoice.edi"
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=b"ISA*invoice~")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        auth, upload = login(client)
        sent = client.post(
            f"/api/folders/{upload}/files",
            content=b'{"po": 7}',
            headers={**auth, "Content-Disposition": "attachment; filename=listed.json"},
        )
        assert sent.status_code == 201, sent.text
        names = [
            f["name"] for f in client.get(f"/api/folders/{upload}/files", headers=auth).json()["resources"]
        ]
        assert "listed.json" in names
        home_id = client.get("/api/folders", headers=auth).json()["resources"][0]["id"]
        children = client.get(f"/api/folders/{home_id}/children", headers=auth).json()["resources"]
        download = next(f["id"] for f in children if f["subspace"] == "download")
        (listed,) = client.get(f"/api/folders/{download}/files", headers=auth).json()["resources"]
        assert listed["name"] == "invoice.edi"
        content = client.get(f"/api/files/{listed['id']}/content", headers=auth)
        assert content.status_code == 200 and content.content == b"ISA*invoice~"
        assert client.delete(f"/api/files/{listed['id']}", headers=auth).status_code == 204
    assert store.s3.list_objects_v2(Bucket=store.bucket, Prefix=key).get("KeyCount") == 0


def test_the_local_folder_holds_no_kept_bytes(api: tuple[WebServer, Store]) -> None:
    _, store = api
    assert not (Path(store.home) / "mailboxes" / ".store").exists()
