"""A home whose storage is a local folder (the default) or an S3 bucket on the moto server, with the
partner `acme`, a folder endpoint `out` and the data flow `acme-out` from acme's upload/ to it:
the same tests run on both storages."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core import dataflows, partners
from core.db import init_db, session_scope
from core.endpoints import rows as endpoint_rows
from tests.isolation import isolated_home
from tests.servers import moto_client
from tests.tenancy import home_scope

PREFIX = "shared/tradelane"


@dataclass
class Store:
    """The storage a test runs on: `bucket` None for the local folder."""

    home: Path
    out: Path
    bucket: str | None
    env: dict[str, str]
    s3: Any = None

    def kept_keys(self) -> list[str]:
        """Every receipt object under the prefix's `.store/` (S3 only)."""
        assert self.s3 is not None and self.bucket is not None
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{PREFIX}/.store/"
        ):
            found += [item["Key"] for item in page.get("Contents", ())]
        return found

    def multipart_uploads(self) -> list[str]:
        assert self.s3 is not None and self.bucket is not None
        answer = self.s3.list_multipart_uploads(Bucket=self.bucket)
        return [upload["Key"] for upload in answer.get("Uploads", ())]


def s3_env(moto_url: str, bucket: str) -> dict[str, str]:
    """What every role is given for an S3 storage: the URL, and boto3's own endpoint and keys."""
    return {
        "TRADELANE_STORAGE_URL": f"s3://{bucket}/{PREFIX}",
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "storage-key",
        "AWS_SECRET_ACCESS_KEY": "storage-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@contextmanager
def make_store(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> Iterator[Store]:
    env: dict[str, str] = {}
    bucket = s3 = None
    if kind == "s3":
        moto_url: str = request.getfixturevalue("moto_server")
        bucket = f"tl-store-{secrets.token_hex(4)}"
        s3 = moto_client(moto_url)
        s3.create_bucket(Bucket=bucket)
        env = s3_env(moto_url, bucket)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with isolated_home(tmp_path / "home"):
            init_db()
            with session_scope() as session:
                scope = home_scope(session)
                partners.add(session, scope, "acme", password="storage-Pass-1")
                endpoint_rows.add(session, scope, "out", "file", {"path": str(tmp_path / "out")})
                dataflows.add(session, scope, "acme-out", source="mailbox:acme", dest="out")
            (tmp_path / "out").mkdir()
            yield Store(tmp_path / "home", tmp_path / "out", bucket, env, s3)
    finally:
        if s3 is not None:
            s3.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same test on a local storage and on an S3 one."""
    with make_store(request, tmp_path, request.param) as made:
        yield made
