"""The portal's resumable (tus) uploads into an S3 storage (moto): in one request or in several, the
file becomes the receipt's object in the bucket only once complete, and nothing is left behind."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from tests.servers import moto_client
from tests.storage.conftest import PREFIX, Store, s3_env
from tests.web.portal_client import Portal, new_partner, receipts_of
from tests.web.server import WebServer, web_server

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def portal_s3(
    moto_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WebServer, Store]]:
    bucket = f"tl-tus-{secrets.token_hex(4)}"
    s3 = moto_client(moto_server)
    s3.create_bucket(Bucket=bucket)
    env = {**s3_env(moto_server, bucket), "TRADELANE_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    home = tmp_path_factory.mktemp("tus-s3") / "home"
    with web_server(home, env) as server:
        yield server, Store(home, home / "out", bucket, env, s3)
    s3.close()


@pytest.mark.parametrize("cuts", [[0], [0, 4 * MIB, 9 * MIB]], ids=["one request", "three requests"])
def test_a_portal_upload_lands_in_the_bucket_when_complete(
    portal_s3: tuple[WebServer, Store], cuts: list[int]
) -> None:
    server, store = portal_s3
    data = os.urandom(10 * MIB + 3)
    before = store.kept_keys()
    with Portal(server, new_partner()) as portal:
        url = portal.new_upload("order.edi", len(data))
        for start, end in zip(cuts, [*cuts[1:], len(data)], strict=True):
            answer = portal.patch(url, start, data[start:end])
            assert answer.status_code == 204, answer.text
            if end < len(data):  # not complete yet: nothing in the bucket, no receipt
                assert receipts_of(portal.name) == [] and store.kept_keys() == before
        (receipt,) = receipts_of(portal.name)
    body = store.s3.get_object(Bucket=store.bucket, Key=f"{PREFIX}/{receipt.storage_path}")["Body"].read()
    assert body == data and receipt.protocol == "portal"
    assert store.multipart_uploads() == []
