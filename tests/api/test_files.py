"""Files: upload edge cases, size limits, disconnects, downloads, deletes, and other partners' files."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from api.ids import file_id, folder_id
from core.db import session_scope
from core.models import AuditEvent, Receipt
from tests.api.conftest import PartnerLogin, Server, latest_receipt, stored_files
from tests.waiting import wait_for

MakePartner = Callable[..., PartnerLogin]


def names_in(p: PartnerLogin, folder: str) -> list[str]:
    return sorted(os.listdir(p.root / folder))


# --- file names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ("attachment;filename=purchase_order_850.json", "purchase_order_850.json"),
        ('attachment; filename="po 850 (copy).json"', "po 850 (copy).json"),
        ("attachment; filename*=UTF-8''na%C3%AFve.json", "naïve.json"),
        ("attachment; filename=\"fallback.json\"; filename*=UTF-8''r%C3%A9sum%C3%A9.json", "résumé.json"),
        ('attachment; filename="quote\\"d.json"', 'quote"d.json'),
        ("ATTACHMENT; FILENAME=upper.json", "upper.json"),
        ("attachment; filename=pct%2Fliteral.json", "pct%2Fliteral.json"),  # plain filename: no decoding
    ],
)
def test_accepted_file_names(make_partner: MakePartner, disposition: str, expected: str) -> None:
    p = make_partner()
    r = p.upload(None, b"{}", disposition=disposition)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == expected
    assert (p.root / "upload" / expected).read_bytes() == b"{}"


@pytest.mark.parametrize(
    "disposition",
    [
        None,
        "attachment",
        "attachment; filename=",
        'attachment; filename=""',
        "attachment;filename=../evil.json",
        'attachment; filename="../../etc/passwd"',
        "attachment; filename=a/b.json",
        "attachment; filename=/abs.json",
        "attachment; filename=a\\b.json",
        "attachment; filename=..",
        "attachment; filename=.hidden",
        "attachment; filename*=UTF-8''..%2Fevil.json",
        "attachment; filename*=UTF-8''evil%00.json",
        "attachment; filename*=UTF-8''tab%09.json",
        "attachment; filename*=UTF-8''bad%FF.json",
        "attachment; filename*=nocharset.json",
    ],
)
def test_rejected_file_names(
    make_partner: MakePartner, tradelane_home: Path, disposition: str | None
) -> None:
    p = make_partner()
    before = stored_files(tradelane_home)
    r = p.upload(None, b"payload", disposition=disposition)
    assert r.status_code == 400, r.text
    assert r.json()["message"]
    assert stored_files(tradelane_home) == before


def test_raw_utf8_file_name(make_partner: MakePartner) -> None:
    p = make_partner()
    disposition = 'attachment; filename="r\u00e9sum\u00e9 \u00fc.json"'.encode()
    r = p.client.post(
        f"/api/folders/{p.folder('upload')['id']}/files",
        content=b"{}",
        headers={**p.auth, "Content-Disposition": disposition},  # type: ignore[dict-item]
    )
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "résumé ü.json"
    assert (p.root / "upload" / "résumé ü.json").exists()


def test_empty_file(make_partner: MakePartner) -> None:
    p = make_partner()
    r = p.upload("empty.txt", b"")
    assert r.status_code == 201, r.text
    assert r.json()["length"] == 0
    assert r.json()["meta"]["sha256"] == hashlib.sha256(b"").hexdigest()
    assert (p.root / "upload" / "empty.txt").read_bytes() == b""
    receipt = latest_receipt(p.id, "empty.txt")
    assert receipt is not None and receipt.size == 0


def test_upload_replaces_same_name(make_partner: MakePartner) -> None:
    p = make_partner()
    assert p.upload("po.json", b"first").status_code == 201
    r = p.upload("po.json", b"second version")
    assert r.status_code == 201
    assert r.json()["length"] == len(b"second version")
    assert (p.root / "upload" / "po.json").read_bytes() == b"second version"
    assert p.files("upload")["totalResults"] == 1


def test_chunked_upload_without_content_length(make_partner: MakePartner) -> None:
    p = make_partner()
    parts = [os.urandom(100_000) for _ in range(25)]

    def body() -> Iterator[bytes]:
        yield from parts

    r = p.upload("chunked.bin", body())
    assert r.status_code == 201, r.text
    data = b"".join(parts)
    assert r.json()["length"] == len(data)
    assert (p.root / "upload" / "chunked.bin").read_bytes() == data
    assert r.json()["meta"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_multipart_is_refused(make_partner: MakePartner) -> None:
    p = make_partner()
    r = p.upload("po.json", b"--x\r\n", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 415
    assert "raw body" in r.json()["message"]


# --- where uploads may go ----------------------------------------------------------------------


def test_upload_into_download_or_home_is_forbidden(make_partner: MakePartner, tradelane_home: Path) -> None:
    p = make_partner()
    before = stored_files(tradelane_home)
    for target in (p.folder("download")["id"], p.home()["id"]):
        r = p.upload("po.json", b"{}", folder_id=target)
        assert r.status_code == 403, r.text
        assert r.json()["message"]
    assert stored_files(tradelane_home) == before


def test_upload_into_another_partners_folder_is_forbidden(
    make_partner: MakePartner, tradelane_home: Path
) -> None:
    a, b = make_partner(), make_partner()
    before = stored_files(tradelane_home)
    r = a.upload("po.json", b"{}", folder_id=folder_id(b.uid, "upload"))
    assert r.status_code == 403
    assert stored_files(tradelane_home) == before


# --- size limits and broken uploads -----------------------------------------------------------


def test_over_limit_by_content_length(
    make_partner: MakePartner, tradelane_home: Path, small_limit: int
) -> None:
    p = make_partner()
    before = stored_files(tradelane_home)
    r = p.upload("big.bin", b"x" * (small_limit + 1))
    assert r.status_code == 413, r.text
    assert str(small_limit) in r.json()["message"]
    assert stored_files(tradelane_home) == before
    assert latest_receipt(p.id, "big.bin") is None
    # Exactly at the limit is fine, and the connection is still usable.
    assert p.upload("big.bin", b"x" * small_limit).status_code == 201


def test_over_limit_while_streaming(
    make_partner: MakePartner, tradelane_home: Path, small_limit: int
) -> None:
    p = make_partner()
    before = stored_files(tradelane_home)

    def body() -> Iterator[bytes]:
        for _ in range(20):
            yield b"y" * 16384

    r = p.upload("big.bin", body())
    assert r.status_code == 413, r.text
    assert stored_files(tradelane_home) == before
    assert latest_receipt(p.id, "big.bin") is None


def test_over_limit_with_curl(
    make_partner: MakePartner, server: Server, tradelane_home: Path, small_limit: int, tmp_path: Path
) -> None:
    """curl sends `Expect: 100-continue` for bodies over 1 MiB: the 413 comes before any body is sent."""
    p = make_partner()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    before = stored_files(tradelane_home)
    done = subprocess.run(
        [
            "curl", "-sS", "--max-time", "30", "-w", "\n%{http_code}",
            "-H", f"Authorization: Bearer {p.token}",
            "-H", "Content-Disposition: attachment; filename=big.bin",
            "-H", "Content-Type: application/octet-stream",
            "--data-binary", f"@{big}",
            f"{server.url}/api/folders/{p.folder('upload')['id']}/files",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    body, _, status = done.stdout.rpartition("\n")
    assert status == "413", done.stdout
    assert "limit" in json.loads(body)["message"]
    assert stored_files(tradelane_home) == before


def test_client_disconnect_leaves_nothing(
    make_partner: MakePartner, server: Server, tradelane_home: Path
) -> None:
    p = make_partner()
    upload_id = p.folder("upload")["id"]
    before = stored_files(tradelane_home)
    head = (
        f"POST /api/folders/{upload_id}/files HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {p.token}\r\n"
        "Content-Disposition: attachment; filename=half.bin\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head.encode())
        sock.sendall(b"z" * (3 * 1024 * 1024))
        # The server streams: a staged temporary file appears while the body is still incomplete.
        wait_for(lambda: stored_files(tradelane_home) - before, "the upload to be streamed to disk")
    wait_for(lambda: stored_files(tradelane_home) == before, "what was staged to be removed")
    assert not (p.root / "upload" / "half.bin").exists()
    assert latest_receipt(p.id, "half.bin") is None
    assert p.get("/api/folders").status_code == 200  # the server is fine


# --- metadata, download, delete ------------------------------------------------------------------


def test_file_metadata(make_partner: MakePartner) -> None:
    p = make_partner()
    uploaded = p.upload("po.json", b'{"po": 1}').json()
    r = p.get(f"/api/files/{uploaded['id']}")
    assert r.status_code == 200
    assert r.json() == uploaded
    assert uploaded["permissions"] == []
    assert uploaded["systemProtected"] == {"delete": True, "rename": True}

    p.put_download("invoice.edi", b"ISA*00*")
    [listed] = p.files("download")["resources"]
    assert listed["subspace"] == "download"
    assert listed["length"] == 7
    assert listed["permissions"] == ["download", "delete"]
    assert listed["systemProtected"] == {"delete": False, "rename": True}
    assert "sha256" not in listed["meta"]  # not received through intake: no receipt to tell
    assert [e["name"] for e in listed["path"]] == [p.name, "download"]
    assert p.get(f"/api/files/{listed['id']}").json() == listed


def test_download_content(make_partner: MakePartner) -> None:
    p = make_partner()
    data = os.urandom(3 * 1024 * 1024 + 123)
    p.put_download("invoice 810 ü.edi", data)
    [listed] = p.files("download")["resources"]
    r = p.get(f"/api/files/{listed['id']}/content")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-length"] == str(len(data))
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''invoice%20810%20%C3%BC.edi" in disposition
    with session_scope() as session:
        event = session.exec(
            select(AuditEvent).where(AuditEvent.action == "download", AuditEvent.actor == f"partner:{p.name}")
        ).one()
    assert event.target == "download/invoice 810 ü.edi"
    assert event.remote_addr == "127.0.0.1"


def test_download_from_upload_is_forbidden(make_partner: MakePartner) -> None:
    p = make_partner()
    uploaded = p.upload("po.json", b"{}").json()
    r = p.get(f"/api/files/{uploaded['id']}/content")
    assert r.status_code == 403
    assert r.json()["message"]


def test_delete_download(make_partner: MakePartner) -> None:
    p = make_partner()
    path = p.put_download("invoice.edi", b"ISA")
    [listed] = p.files("download")["resources"]
    r = p.delete(f"/api/files/{listed['id']}")
    assert r.status_code == 204
    assert r.content == b""
    assert not path.exists()
    assert p.get(f"/api/files/{listed['id']}").status_code == 404
    assert p.delete(f"/api/files/{listed['id']}").status_code == 404
    with session_scope() as session:
        event = session.exec(
            select(AuditEvent).where(AuditEvent.action == "delete", AuditEvent.actor == f"partner:{p.name}")
        ).one()
    assert event.target == "download/invoice.edi"


def test_delete_forbidden(make_partner: MakePartner) -> None:
    p = make_partner(can_delete_downloads=False)
    path = p.put_download("invoice.edi", b"ISA")
    [listed] = p.files("download")["resources"]
    assert listed["permissions"] == ["download"]
    assert listed["systemProtected"]["delete"] is True
    r = p.delete(f"/api/files/{listed['id']}")
    assert r.status_code == 403
    assert path.exists()

    uploaded = p.upload("po.json", b"{}").json()
    r = p.delete(f"/api/files/{uploaded['id']}")
    assert r.status_code == 403
    assert (p.root / "upload" / "po.json").exists()


# --- ids -----------------------------------------------------------------------------------------


def test_other_partners_file_is_forbidden(make_partner: MakePartner) -> None:
    a, b = make_partner(), make_partner()
    path = b.put_download("secret.edi", b"for b only")
    [listed] = b.files("download")["resources"]
    for method, url in [
        ("GET", f"/api/files/{listed['id']}"),
        ("GET", f"/api/files/{listed['id']}/content"),
        ("DELETE", f"/api/files/{listed['id']}"),
    ]:
        r = a.client.request(method, url, headers=a.auth)
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["message"]
    assert path.read_bytes() == b"for b only"


@pytest.mark.parametrize(
    "make_id",
    [
        lambda p: "garbage!",
        lambda p: "Zm9vOmJhcg",  # "foo:bar": folder part is not a folder id
        lambda p: file_id(folder_id(p.uid, "download"), "missing.edi"),
        lambda p: file_id(folder_id(p.uid, ""), "at-home.txt"),  # files never live in the home folder
        lambda p: file_id(folder_id(p.uid, "download"), "../upload/po.json"),
        lambda p: file_id(folder_id(p.uid, "download"), ".hidden"),
    ],
)
def test_unknown_file_ids(make_partner: MakePartner, make_id: Callable[[PartnerLogin], str]) -> None:
    p = make_partner()
    (p.root / "at-home.txt").write_text("x")
    for suffix in ("", "/content"):
        r = p.get(f"/api/files/{make_id(p)}{suffix}")
        assert r.status_code == 404, r.text
        assert r.json()["message"]
    assert p.delete(f"/api/files/{make_id(p)}").status_code == 404


def test_receipts_are_written_for_uploads_only(make_partner: MakePartner) -> None:
    p = make_partner()
    p.upload("po.json", b"{}")
    p.put_download("invoice.edi", b"ISA")
    p.get(f"/api/files/{p.files('download')['resources'][0]['id']}/content")
    with session_scope() as session:
        rows = session.exec(select(Receipt).where(Receipt.partner_id == p.id)).all()
    assert [(r.folder, r.name) for r in rows] == [("upload", "po.json")]


def test_error_bodies_are_json(client: httpx.Client, make_partner: MakePartner) -> None:
    p = make_partner()
    r = client.post(f"/api/folders/{p.folder('upload')['id']}/files", content=b"x")
    assert r.status_code == 401 and set(r.json()) == {"message"}
    r = p.upload("x.json", b"x", folder_id="00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and set(r.json()) == {"message"}
