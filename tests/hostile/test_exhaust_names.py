"""File names that could spoof what an operator sees (issue 16): bidi controls, line separators and
invisible characters are refused on every door; names are kept in NFC, so an NFD twin is the same
name, not a second file that looks identical.
"""

from __future__ import annotations

import ftplib
import io
import unicodedata
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from core.intake import InvalidFileName, check_file_name
from tests.hostile.exhaust_support import *  # noqa: F403
from tests.hostile.exhaust_support import Partner, api_server, ftp_server, ftps, sftp_login, sftp_server

NFC = unicodedata.normalize("NFC", "café_résumé.csv")
NFD = unicodedata.normalize("NFD", NFC)
SPOOFS = {
    "invoice_\u202efdp.exe": "U+202E (RIGHT-TO-LEFT OVERRIDE)",  # shows as invoice_exe.pdf
    "po\u2028850.edi": "U+2028 (LINE SEPARATOR)",
    "po\u2029850.edi": "U+2029 (PARAGRAPH SEPARATOR)",
    "a\u2066b.txt": "U+2066 (LEFT-TO-RIGHT ISOLATE)",
    "a\u200fb.txt": "U+200F (RIGHT-TO-LEFT MARK)",
    "a\u061cb.txt": "U+061C (ARABIC LETTER MARK)",
    "in\u200bvoice.pdf": "U+200B (ZERO WIDTH SPACE)",
    "a\x1bb.txt": "U+001B",
}


@pytest.fixture(scope="module")
def api(exhaust_home: object) -> Iterator[httpx.Client]:
    with api_server() as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client


class Rest:
    def __init__(self, client: httpx.Client, partner: Partner) -> None:
        self.client = client
        token = client.post(
            "/api/authentication",
            data={"grant_type": "password", "username": partner.name, "password": partner.password},
        ).json()["access_token"]
        self.auth = {"Authorization": f"Bearer {token}"}
        home = client.get("/api/folders", headers=self.auth).json()["resources"][0]["id"]
        children = client.get(f"/api/folders/{home}/children", headers=self.auth).json()["resources"]
        self.upload_id = next(c["id"] for c in children if c["subspace"] == "upload")

    def upload(self, name: str, data: bytes) -> httpx.Response:
        disposition = f"attachment; filename*=UTF-8''{quote(name)}"
        headers = {**self.auth, "Content-Disposition": disposition}
        return self.client.post(f"/api/folders/{self.upload_id}/files", content=data, headers=headers)


def test_the_rule() -> None:
    for name, what in SPOOFS.items():
        with pytest.raises(InvalidFileName) as refused:
            check_file_name(name)
        assert f"must not contain {what}" in str(refused.value)
    assert check_file_name(NFD) == NFC
    assert check_file_name("ملف_فارسی.txt") == "ملف_فارسی.txt"  # right-to-left text itself is fine
    assert check_file_name("報告書 2024.pdf") == "報告書 2024.pdf"


def test_rest_refuses_spoofing_names_and_keeps_nfc(
    api: httpx.Client, make_partner: Callable[[], Partner]
) -> None:
    partner = make_partner()
    rest = Rest(api, partner)
    for name, what in SPOOFS.items():
        r = rest.upload(name, b"x")
        assert r.status_code == 400, name
        assert what in r.json()["message"]
    assert rest.upload(NFD, b"v1").status_code == 201
    [receipt] = partner.receipts()
    assert receipt.name == NFC
    assert [p.name for p in (partner.home / "upload").iterdir()] == [NFC]


def test_sftp_refuses_spoofing_names_and_an_nfd_twin_is_the_same_file(
    make_partner: Callable[[], Partner],
) -> None:
    partner = make_partner()
    with sftp_server() as server:
        transport, client = sftp_login(server.port, partner)
        with pytest.raises(OSError, match="U\\+202E"):
            client.putfo(io.BytesIO(b"x"), "/upload/invoice_\u202efdp.exe")
        with pytest.raises(OSError, match="U\\+2028"):
            client.putfo(io.BytesIO(b"x"), "/upload/po\u2028850.edi")
        client.putfo(io.BytesIO(b"first"), f"/upload/{NFC}.part")
        client.rename(f"/upload/{NFD}.part", f"/upload/{NFD}")  # the NFD spelling finds the NFC file
        assert client.listdir("/upload") == [NFC]
        assert client.stat(f"/upload/{NFD}").st_size == 5
        transport.close()
    assert [r.name for r in partner.receipts()] == [NFC]


def test_ftp_refuses_spoofing_names(make_partner: Callable[[], Partner]) -> None:
    partner = make_partner()
    with ftp_server() as server, ftps(server.port, partner) as ftp:
        for name in ("invoice_\u202efdp.exe", "po\u2028850.edi"):
            with pytest.raises(ftplib.error_perm, match="553 file name must not contain"):
                ftp.storbinary(f"STOR /upload/{name}", io.BytesIO(b"x"))
        ftp.storbinary(f"STOR /upload/{NFD}", io.BytesIO(b"ok"))
        assert ftp.nlst("/upload") == [NFC]
    assert [r.name for r in partner.receipts()] == [NFC]
    assert not partner.staging.exists() or list(partner.staging.iterdir()) == []
