"""`TRADELANE_STORAGE_URL=s3://bucket/prefix`: accepted in one spelling, refused with a reason
when malformed, and a bucket that does not exist refuses every role's start, naming it."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from core import storage
from core.config import Settings
from tests.roles.topology import base_env
from tests.servers import moto_client
from tests.storage.conftest import s3_env


def test_an_s3_url_is_accepted_and_the_local_folder_stays_the_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, storage_url="s3://tl-bucket/shared/tradelane/")
    assert settings.storage_url == "s3://tl-bucket/shared/tradelane"
    assert (settings.storage_bucket, settings.storage_prefix) == ("tl-bucket", "shared/tradelane")
    assert storage.is_object_store(settings)
    whole = Settings(home=tmp_path, storage_url="s3://tl-bucket")
    assert (whole.storage_bucket, whole.storage_prefix) == ("tl-bucket", "")
    # Unset or a folder: a local folder, as before.
    default = Settings(home=tmp_path)
    assert default.storage_bucket is None and default.mailbox_root == tmp_path.resolve() / "mailboxes"
    assert not storage.is_object_store(default)
    folder = Settings(home=tmp_path, storage_url=str(tmp_path / "shared"))
    assert folder.storage_bucket is None and folder.mailbox_root == tmp_path / "shared"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://Bad_Bucket/x", "is not an S3 bucket name"),
        ("s3:///prefix", "is not an S3 bucket name"),
        ("s3://tl-bucket/a/../b", "plain folder names"),
        ("s3://key:secret@tl-bucket/x", "AWS_ENDPOINT_URL"),
        ("s3://tl-bucket/x?region=eu", "AWS_ENDPOINT_URL"),
        ("gs://tl-bucket/x", "s3://bucket/prefix"),
    ],
)
def test_a_malformed_storage_url_is_refused(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("?", r"\?")):
        Settings(storage_url=url)


def test_a_missing_bucket_is_named(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"tl-missing-{secrets.token_hex(4)}"
    for key, value in s3_env(moto_server, missing).items():
        monkeypatch.setenv(key, value)
    settings = Settings(storage_url=f"s3://{missing}/x")
    with pytest.raises(storage.StorageError, match=f"the storage bucket '{missing}' does not exist"):
        storage.check(settings)
    client = moto_client(moto_server)
    client.create_bucket(Bucket=missing)
    client.close()
    storage.check(settings)  # it exists now: nothing to say


def test_refused_credentials_are_said(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against moto's credential-checking server: a wrong key is told apart from a missing bucket."""
    auth = request.getfixturevalue("moto_auth_server")
    monkeypatch.setenv("AWS_ENDPOINT_URL", auth.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    settings = Settings(storage_url=f"s3://{auth.bucket}/x")
    with pytest.raises(
        storage.StorageError, match=f"the storage bucket '{auth.bucket}' refused these credentials"
    ):
        storage.check(settings)


@pytest.mark.parametrize("command", [["serve", "api"], ["worker"], ["up"]])
def test_a_role_refuses_to_start_on_a_bucket_that_does_not_exist(
    moto_server: str, tmp_path: Path, command: list[str]
) -> None:
    missing = f"tl-missing-{secrets.token_hex(4)}"
    env = {
        **base_env(),
        **s3_env(moto_server, missing),
        "TRADELANE_HOME": str(tmp_path / "home"),
        "TRADELANE_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "TRADELANE_SECRET_KEY": "x" * 43 + "=",
        "TRADELANE_PREFECT_AUTH": "ops:secret",
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *command], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the storage bucket '{missing}' does not exist" in result.stderr, result.stderr
    assert not (tmp_path / "store.db").exists()  # refused before anything was made
