"""A partner (or a crowd of its clients) that keeps sending one name: nothing acknowledged is lost,
nothing at the destination is replaced, and the private store stays out of reach. Against a real
`tradelane up` (REST, SFTP)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paramiko
import pytest

from tests.e2e.helpers import PartnerClient, delivered, settled, unique
from tests.system import System

PASSWORD = "hostile-noloss-pw"


def _partner(system: System, opened: contextlib.ExitStack) -> tuple[str, PartnerClient]:
    """A new partner and its logged-in client, closed when the test ends (`opened`)."""
    name = unique("hn")
    system.cli("partner", "add", name, "--password", PASSWORD)
    return name, opened.enter_context(PartnerClient(system, name, PASSWORD))


def _file_flow(system: System, partner: str, dest: Path, *extra: str) -> str:
    endpoint, flow = unique("dir"), unique("flow")
    system.cli("endpoint", "add", endpoint, "--type", "file", "--path", str(dest))
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", endpoint, *extra)
    return flow


def _upload(client: PartnerClient, name: str, body: bytes) -> int:
    """Upload with the name quoted, as a careful client does (a bare `(2)` is a MIME comment)."""
    response = client.http.post(
        f"/api/folders/{client.folder_ids()['upload']}/files",
        content=body,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Type": "application/octet-stream",
        },
    )
    return response.status_code


def _landed(row: dict[str, str]) -> Path:
    return Path(unquote(urlsplit(row["destination_uri"]).path))


def test_one_name_uploaded_many_times_at_once_loses_nothing(
    system: System, tmp_path: Path, opened: contextlib.ExitStack
) -> None:
    """25 uploads of one name from 5 clients at once, while the flow holds them and then carries them
    8 at a time into one folder: every acknowledged upload arrives with its own bytes."""
    partner, _ = _partner(system, opened)
    dest = tmp_path / "dest"
    flow = _file_flow(system, partner, dest)
    system.cli("flow", "disable", flow)
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()

    def client_sends(index: int) -> None:
        with PartnerClient(system, partner, PASSWORD) as client:
            for n in range(5):
                body = f"client {index} upload {n} ".encode() + os.urandom(64)
                if client.upload("invoice_812.edi", body).status_code == 201:
                    with lock:
                        acknowledged[hashlib.sha256(body).hexdigest()] = body

    threads = [threading.Thread(target=client_sends, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(acknowledged) == 25
    system.cli("flow", "enable", flow)
    rows = system.wait_for(delivered(25), timeout=120, flow=flow)
    assert {row["sha256"] for row in rows} == set(acknowledged)
    for row in rows:
        assert _landed(row).read_bytes() == acknowledged[row["sha256"]]
    names = sorted(os.listdir(dest))
    assert len(names) == 25 and "invoice_812.edi" in names and "invoice_812 (25).edi" in names
    upload = system.home / "mailboxes" / "home" / partner / "upload"
    assert list(upload.iterdir()) == []


def test_names_that_look_numbered_are_never_overwritten(
    system: System, tmp_path: Path, opened: contextlib.ExitStack
) -> None:
    """A partner that sends `x (2).edi` itself first: the next `x.edi` deliveries go around it."""
    partner, client = _partner(system, opened)
    dest = tmp_path / "dest"
    flow = _file_flow(system, partner, dest)
    for i, name in enumerate(["x (2).edi", "x.edi", "x.edi"], 1):
        assert _upload(client, name, f"upload {i}".encode()) == 201
        system.wait_for(delivered(i), flow=flow)
    assert {n: (dest / n).read_bytes() for n in os.listdir(dest)} == {
        "x (2).edi": b"upload 1",
        "x.edi": b"upload 2",
        "x (3).edi": b"upload 3",
    }


def test_fail_policy_keeps_the_first_and_fails_the_second_once(
    system: System, tmp_path: Path, opened: contextlib.ExitStack
) -> None:
    partner, client = _partner(system, opened)
    dest = tmp_path / "dest"
    flow = _file_flow(
        system, partner, dest, "--on-conflict", "fail", "--retries", "3", "--retry-delay", "0.2"
    )
    assert client.upload("po.json", b"the first").status_code == 201
    system.wait_for(delivered(1), flow=flow)
    assert client.upload("po.json", b"a different second").status_code == 201
    rows = system.wait_for(settled(2), flow=flow)
    second = rows[0]
    assert second["state"] == "failed" and second["attempts"] == 1  # not retried
    assert "po.json exists and on_conflict is fail" in second["error"]
    assert os.listdir(dest) == ["po.json"] and (dest / "po.json").read_bytes() == b"the first"


def _sftp(system: System, user: str) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", int(system.env["TRADELANE_SFTP_PORT"])))
    transport.connect(username=user, password=PASSWORD)
    return transport, paramiko.SFTPClient.from_transport(transport)


def test_sftp_rewrites_of_one_name_each_keep_their_bytes(
    system: System, tmp_path: Path, opened: contextlib.ExitStack
) -> None:
    partner, client = _partner(system, opened)
    client.close()
    dest = tmp_path / "dest"
    flow = _file_flow(system, partner, dest)
    system.cli("flow", "disable", flow)
    versions = [os.urandom(70_000 + i) for i in range(6)]
    transport, sftp = _sftp(system, partner)
    try:
        for data in versions:
            with sftp.open("/upload/stock.csv", "wb") as handle:
                handle.write(data)
        # The partner sees one stock.csv: the newest.
        assert sftp.listdir("/upload") == ["stock.csv"]
        assert sftp.stat("/upload/stock.csv").st_size == len(versions[-1])
    finally:
        transport.close()
    system.cli("flow", "enable", flow)
    rows = system.wait_for(delivered(6), timeout=90, flow=flow)
    assert sorted(_landed(row).read_bytes() for row in rows) == sorted(versions)


@pytest.mark.parametrize(
    "path",
    ["/.store", "/../.store", "/upload/../../.store", "/upload/../.store", "/../../mailboxes/.store"],
)
def test_the_private_store_is_out_of_a_partners_reach(
    system: System, path: str, opened: contextlib.ExitStack
) -> None:
    partner, client = _partner(system, opened)
    assert client.upload("secret.edi", b"kept privately").status_code == 201
    client.close()
    transport, sftp = _sftp(system, partner)
    try:
        with pytest.raises(OSError):
            sftp.listdir(path)
        assert ".store" not in sftp.listdir("/")
        with pytest.raises(OSError):
            sftp.open(f"{path}/anything", "rb")
    finally:
        transport.close()
