"""Interoperability with an implementation that shares no code with pyas2lib: `openssl cms`.

Inbound: openssl signs and encrypts a message, we receive it. Outbound: we send, openssl
decrypts and verifies what went over the wire.
"""

from __future__ import annotations

import email
import email.utils
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pyas2lib
import pytest

from tests.as2.conftest import OUR_ID, As2Server, Trading
from tests.as2.peer import Identity, PeerServer
from tests.as2.test_send import push
from tests.servers import require_tool
from tests.tenancy import home_scope

OPENSSL = require_tool("openssl")


def openssl(*args: str) -> None:
    result = subprocess.run([OPENSSL, *args], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def files(tmp_path: Path, ident: Identity) -> tuple[Path, Path]:
    key, cert = tmp_path / f"{ident.as2_id}.key", tmp_path / f"{ident.as2_id}.crt"
    key.write_text(ident.key_pem)
    cert.write_text(ident.cert_pem)
    return key, cert


@pytest.mark.parametrize(
    ("cipher", "digest"), [("-aes256", "sha256"), ("-des3", "sha1"), ("-aes128", "sha512")]
)
def test_receive_a_message_built_by_openssl(
    as2_server: As2Server, trading: Callable[..., Trading], tmp_path: Path, cipher: str, digest: str
) -> None:
    partner = trading(sign=digest, encrypt="aes256")
    partner_key, partner_cert = files(tmp_path, partner.ident)
    _, our_cert = files(tmp_path, partner.us)
    data = os.urandom(20_000) + b"\r\nUNH+1+ORDERS:D:96A:UN'\n"
    entity = (
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n"
        b'Content-Disposition: attachment; filename="openssl.edi"\r\n\r\n' + data
    )
    (tmp_path / "entity").write_bytes(entity)
    openssl(
        "cms", "-sign", "-binary", "-md", digest, "-in", str(tmp_path / "entity"),
        "-signer", str(partner_cert), "-inkey", str(partner_key),
        "-outform", "SMIME", "-out", str(tmp_path / "signed"),
    )  # fmt: skip
    openssl(
        "cms", "-encrypt", "-binary", cipher, "-in", str(tmp_path / "signed"), "-outform", "DER",
        "-out", str(tmp_path / "enveloped"), str(our_cert),
    )  # fmt: skip
    message_id = email.utils.make_msgid(domain="openssl.test").strip("<>")
    headers = {
        "AS2-Version": "1.2",
        "AS2-From": partner.as2_id,
        "AS2-To": OUR_ID,
        "Message-ID": f"<{message_id}>",
        "Content-Type": 'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
        "Disposition-Notification-To": "edi@openssl.test",
        "Disposition-Notification-Options": (
            "signed-receipt-protocol=optional, pkcs7-signature; signed-receipt-micalg=optional, sha256"
        ),
    }
    response = httpx.post(
        as2_server.receive_url, headers=headers, content=(tmp_path / "enveloped").read_bytes()
    )
    assert response.status_code == 200
    # The MDN, checked with openssl too: its signature verifies with our certificate.
    mdn_file = tmp_path / "mdn"
    mdn_file.write_bytes(
        f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode() + response.content
    )
    openssl(
        "cms",
        "-verify",
        "-in",
        str(mdn_file),
        "-inform",
        "SMIME",
        "-CAfile",
        str(our_cert),
        "-out",
        str(tmp_path / "report"),
    )  # fmt: skip  (an MDN is text: verified in canonical form)
    report = (tmp_path / "report").read_text()
    assert f"Original-Message-ID: <{message_id}>" in report
    assert "automatic-action/MDN-sent-automatically; processed" in report and "Error" not in report
    assert f", {digest}" in report  # Received-content-MIC with the digest openssl signed with
    assert (partner.upload / "openssl.edi").read_bytes() == data


def test_openssl_reads_what_we_send(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer, tmp_path: Path
) -> None:
    trading(peer.me, url=peer.url, sign="sha256", encrypt="aes256", mdn="sync", mdn_sign="sha256")
    data = bytes(range(256)) * 40 + b"\r\n\n" + os.urandom(7000)
    push(peer.me.as2_id, "to-openssl.bin", data)
    [got] = peer.received
    assert got.headers["Content-Type"].startswith("application/pkcs7-mime")
    peer_key, peer_cert = files(tmp_path, peer.me)
    our_key_unused, our_cert = files(tmp_path, Identity(OUR_ID, "", ""))
    our_cert.write_text(_our_cert_pem())
    (tmp_path / "wire.der").write_bytes(got.raw_body)
    openssl(
        "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(tmp_path / "wire.der"),
        "-recip", str(peer_cert), "-inkey", str(peer_key), "-out", str(tmp_path / "signed"),
    )  # fmt: skip
    # openssl's S/MIME reader rewrites bare LFs to CRLF, so binary content is verified detached:
    # the signed part cut out byte-exact at its boundaries, the signature as DER.
    signed = (tmp_path / "signed").read_bytes()
    container = email.message_from_bytes(signed)
    boundary = container.get_boundary().encode()
    (tmp_path / "content").write_bytes(signed.split(b"--" + boundary)[1][2:-2])
    signature = next(p for p in container.walk() if p.get_content_type() == "application/pkcs7-signature")
    (tmp_path / "sig.der").write_bytes(signature.get_payload(decode=True))
    openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "sig.der"),
        "-content", str(tmp_path / "content"), "-CAfile", str(our_cert), "-out", str(tmp_path / "entity"),
    )  # fmt: skip
    entity = email.message_from_bytes((tmp_path / "entity").read_bytes())
    assert entity.get_filename() == "to-openssl.bin"
    assert entity.get_payload(decode=True) == data
    assert our_key_unused.exists()


def _our_cert_pem() -> str:
    from core.as2 import identity
    from core.db import session_scope

    with session_scope() as session:
        return identity.require(session, home_scope(session), OUR_ID).certificate


def test_pyas2lib_is_importable() -> None:
    """The oscrypto fix (see README): pyas2lib's crypto backend loads on this OpenSSL."""
    from oscrypto import backend

    assert backend() == "openssl"
    assert pyas2lib.__version__ == "1.4.4"
