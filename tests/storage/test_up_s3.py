"""A real `tradelane up` on an S3 storage (moto): the API process takes a REST upload into the
bucket, the runner's flow run (another process) streams it from there to a folder and into a
partner's mailbox in the bucket, `tradelane replay` reads the kept object again, and nothing of it
is in the home's local folder."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.e2e.helpers import PartnerClient, delivered
from tests.servers import moto_client
from tests.storage.conftest import PREFIX, s3_env
from tests.system import run_system

PASSWORD = "Up-S3-Pass-2026"


def test_up_on_an_s3_storage_carries_files_through_the_bucket(moto_server: str, tmp_path: Path) -> None:
    bucket = f"tl-up-{secrets.token_hex(4)}"
    s3 = moto_client(moto_server)
    s3.create_bucket(Bucket=bucket)
    out = tmp_path / "out"
    out.mkdir()
    try:
        with run_system(**s3_env(moto_server, bucket)) as system:
            system.cli("partner", "add", "acme", "--password", PASSWORD)
            system.cli("partner", "add", "bob", "--password", PASSWORD)
            system.cli("endpoint", "add", "out", "--type", "file", "--path", str(out))
            system.cli("flow", "add", "acme-out", "--source", "mailbox:acme", "--dest", "out")
            system.cli("flow", "add", "acme-bob", "--source", "mailbox:acme", "--dest", "mailbox:bob")
            with PartnerClient(system, "acme", PASSWORD) as acme:
                assert acme.upload("po.json", b'{"po": "s3"}').status_code == 201
            rows = system.wait_for(delivered(2))
            assert (out / "po.json").read_bytes() == b'{"po": "s3"}'
            bob_key = f"{PREFIX}/home/bob/download/po.json"
            assert s3.get_object(Bucket=bucket, Key=bob_key)["Body"].read() == b'{"po": "s3"}'
            stored = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/.store/")["Contents"]
            assert len(stored) == 1
            assert not (system.home / "mailboxes" / ".store").exists()
            # Picked up at the destination, then replayed: read from the bucket again.
            (out / "po.json").unlink()
            first = next(r for r in rows if r["flow"] == "acme-out")
            system.cli("replay", str(first["id"]))
            system.wait_for(delivered(3))
            assert (out / "po.json").read_bytes() == b'{"po": "s3"}'
    finally:
        s3.close()
