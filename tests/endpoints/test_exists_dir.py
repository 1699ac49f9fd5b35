"""`Endpoint.exists_dir` against real stores: True/False for folder stores, None where there are none.

A B2B connection lands only into the folder its receiver chose (core/delivery.py check_folder);
this is how each store answers whether that folder is there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.endpoints.file import FileEndpoint
from core.endpoints.registry import open_endpoint
from tests.endpoint_servers.ftpd import FtpTestServer
from tests.endpoint_servers.sshd import OpenSSHServer
from tests.endpoints.test_ftp_client import make_endpoint as ftp_endpoint
from tests.endpoints.test_sftp_client import make_endpoint as sftp_endpoint
from tests.servers import moto_client


def _layout(root: Path) -> None:
    (root / "in" / "acme").mkdir(parents=True)
    (root / "in" / "file.txt").write_text("not a folder")


def test_file(tmp_path: Path) -> None:
    _layout(tmp_path)
    with FileEndpoint({"path": str(tmp_path)}) as endpoint:
        assert endpoint.exists_dir("in/acme") is True
        assert endpoint.exists_dir("") is True
        assert endpoint.exists_dir("in/gone") is False
        assert endpoint.exists_dir("in/file.txt") is False


def test_sftp(openssh_server: OpenSSHServer) -> None:
    folder = openssh_server.new_folder()
    _layout(folder)
    with sftp_endpoint(openssh_server, folder, {"password": openssh_server.password}) as endpoint:
        assert endpoint.exists_dir("in/acme") is True
        assert endpoint.exists_dir("") is True
        assert endpoint.exists_dir("in/gone") is False
        assert endpoint.exists_dir("in/file.txt") is False


@pytest.mark.parametrize("mlst", [True, False], ids=["mlst", "cwd"])
def test_ftp(ftp_server: FtpTestServer, mlst: bool) -> None:
    local, remote = ftp_server.new_folder()
    _layout(local)
    with ftp_endpoint(ftp_server, remote) as endpoint:
        if not mlst:  # a server without MLST: the folder is tried with CWD, and left again
            original = endpoint.acquire

            def without_mlst():  # type: ignore[no-untyped-def]
                connection, reused = original()
                connection.mlst = False
                return connection, reused

            endpoint.acquire = without_mlst  # type: ignore[method-assign]
        assert endpoint.exists_dir("in/acme") is True
        assert endpoint.exists_dir("in/gone") is False
        assert endpoint.exists_dir("in/file.txt") is False
        # The pooled connection still works in its own folder afterwards.
        with endpoint.open_write("after.txt") as out:
            out.write(b"x")
        assert [info.name for info in endpoint.list("")] == ["after.txt"]


def test_object_stores_have_no_folders(moto_server: str) -> None:
    moto_client(moto_server).create_bucket(Bucket="exists-dir")
    config = {"bucket": "exists-dir", "endpoint_url": moto_server, "region": "us-east-1"}
    secrets = {"access_key_id": "AKIAEXISTS", "secret_access_key": "exists-secret"}
    with open_endpoint("s3", config, secrets) as endpoint:
        assert endpoint.exists_dir("in/acme") is None
