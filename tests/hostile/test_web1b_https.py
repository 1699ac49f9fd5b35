"""The API port over HTTPS (`TRADELANE_API_TLS=true`) on a real `tradelane up`, with the one certificate
every TLS door presents (core/tls.py): clients that trust the home's `tls_cert.pem` reach the REST API,
the docs and AS2 over HTTPS; FTPS presents the very same certificate; plain HTTP on that port gets no
answer; `up` says the https URL and the fingerprint to check.
"""

from __future__ import annotations

import ftplib
import hashlib
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyas2lib
import pytest

from core.tls import CERT_FILE, fingerprint
from tests.as2.peer import Identity, judge_mdn, partner_of, wire
from tests.e2e.helpers import unique
from tests.system import System, run_system

PASSWORD = "Https-Partner-Pass-1"


@pytest.fixture(scope="module")
def tls_system() -> Iterator[System]:
    with run_system(TRADELANE_API_TLS="true") as running:
        yield running


def trusting(system: System) -> ssl.SSLContext:
    """A client context that trusts only the home's certificate (and checks the host name)."""
    return ssl.create_default_context(cafile=str(system.home / CERT_FILE))


def test_up_says_the_https_url_and_the_certificate_to_trust(tls_system: System) -> None:
    assert tls_system.api.startswith("https://127.0.0.1:")
    cert = tls_system.home / CERT_FILE
    [log] = [
        line for line in (tls_system.home / "up.log").read_text().splitlines() if "tradelane is up" in line
    ]
    port = tls_system.env["TRADELANE_API_PORT"]
    assert f"API https://127.0.0.1:{port} (self-signed, SHA-256 {fingerprint(cert)}; trust {cert})" in log
    # The fingerprint is the one openssl shows for the certificate the port presents.
    with (
        socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw,
        trusting(tls_system).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    presented = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert presented == fingerprint(cert)


def test_rest_api_over_https_trusting_the_certificate(tls_system: System) -> None:
    name = unique("tlspartner")
    tls_system.cli("partner", "add", name, "--password", PASSWORD)
    with httpx.Client(base_url=tls_system.api, verify=trusting(tls_system), timeout=30) as client:
        token = client.post(
            "/api/authentication", data={"grant_type": "password", "username": name, "password": PASSWORD}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        home = client.get("/api/folders", headers=auth).json()["resources"][0]
        children = client.get(f"/api/folders/{home['id']}/children", headers=auth).json()["resources"]
        upload = next(c for c in children if c["subspace"] == "upload")
        body = b"over https\n" * 1000
        answer = client.post(
            f"/api/folders/{upload['id']}/files",
            headers={**auth, "Content-Disposition": "attachment; filename=po_tls.txt"},
            content=body,
        )
        assert answer.status_code in (200, 201), answer.text
        listed = client.get(f"/api/folders/{upload['id']}/files", headers=auth).json()["resources"]
        assert [f["name"] for f in listed] == ["po_tls.txt"]
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert docs.headers["strict-transport-security"] == "max-age=15552000"


def test_curl_over_https_with_the_certificate_and_nothing_in_clear(tls_system: System) -> None:
    cert, health = str(tls_system.home / CERT_FILE), f"{tls_system.api}/api/health"
    ok = subprocess.run(
        ["curl", "-sS", "--cacert", cert, "-o", "/dev/null", "-w", "%{http_code}", health],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.stdout == "200", ok.stderr
    # Without trusting it, curl refuses the self-signed certificate.
    untrusted = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", health],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert untrusted.returncode == 60, untrusted.stderr  # CURLE_PEER_FAILED_VERIFICATION
    # TLS 1.1 is refused (the client here is told to allow it).
    port = tls_system.env["TRADELANE_API_PORT"]
    old_tls = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert old_tls.returncode != 0 and "Cipher is (NONE)" in old_tls.stdout, old_tls.stdout
    # Plain HTTP on the HTTPS port: no HTTP answer (one port, one scheme).
    plain = tls_system.api.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/api/health", timeout=10)


def test_ftps_presents_the_same_certificate_as_https(tls_system: System) -> None:
    context = trusting(tls_system)
    context.check_hostname = False  # ftplib does not pass the host name for the data connection
    with ftplib.FTP_TLS(timeout=10, context=context) as ftp:
        ftp.connect("127.0.0.1", int(tls_system.env["TRADELANE_FTP_PORT"]))
        ftp.auth()
        assert isinstance(ftp.sock, ssl.SSLSocket)
        ftps_der = ftp.sock.getpeercert(binary_form=True)
    assert ftps_der is not None
    assert ssl.DER_cert_to_PEM_cert(ftps_der).strip() == (tls_system.home / CERT_FILE).read_text().strip()


def test_as2_receive_over_https(tls_system: System, tmp_path: Path) -> None:
    our_id, peer_id, mailbox = unique("TLSUS").upper(), unique("TLSPEER").upper(), unique("as2tls")
    tls_system.cli("as2", "org", "create", "--as2-id", our_id)
    ours = Identity(
        our_id, key_pem="", cert_pem=tls_system.cli("as2", "org", "cert", "--as2-id", our_id).stdout
    )
    peer = Identity.new(peer_id)
    (tmp_path / "peer.pem").write_text(peer.cert_pem)
    tls_system.cli("partner", "add", mailbox, "--password", PASSWORD)
    tls_system.cli(
        "as2", "partner", "add", peer_id, "--mailbox", mailbox, "--url", "https://127.0.0.1:9/as2",
        "--cert", str(tmp_path / "peer.pem"), "--sign", "sha256", "--mdn", "sync", "--mdn-sign", "sha256",
        "--org", our_id,
    )  # fmt: skip
    message = pyas2lib.Message(
        sender=peer.organization(),
        receiver=partner_of(ours, sign=True, digest_alg="sha256", mdn_mode="SYNC", mdn_digest_alg="sha256"),
    )
    message.build(b"ISA*00*over https~\n" * 50, filename="po_850.x12", content_type="application/edi-x12")
    headers, body = wire(message)
    answer = httpx.post(
        f"{tls_system.api}/as2/receive",
        headers=headers,
        content=body,
        verify=trusting(tls_system),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    status, detail, _ = judge_mdn(answer, message)
    assert (status, detail) == ("processed", None)
    rows = json.loads(tls_system.cli("as2", "messages", "--json", "--partner", peer_id).stdout)
    assert [(r["message_id"], r["status"]) for r in rows] == [(message.message_id, "received")]
