"""Large AS2 messages: parsed without the email parser reading their bodies (core/as2/parse.py).

Over real HTTP, messages of a few MiB, built by pyas2lib and by `openssl cms`,
arrive whole with the right MIC; a tampered one is still refused. The splitting itself is checked
against the email parser on awkward inputs (a unit of pure logic), and its point — memory — by
the peak traced while one message is received.
"""

from __future__ import annotations

import email
import os
import subprocess
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.as2 import parse as parsing
from core.as2 import receive as inbound
from tests.as2.conftest import OUR_ID, As2Server, Trading
from tests.as2.peer import Identity, judge_mdn, post, wire
from tests.servers import require_tool

SIZE = 2 * 1024 * 1024 + 12345


def _message(
    partner: Trading, data: bytes, name: str, **options: object
) -> tuple[dict[str, str], bytes, Any]:
    message = partner.message(mdn_mode="SYNC", mdn_digest_alg="sha256", sign=True, digest_alg="sha256",
                              encrypt=True, enc_alg="aes_256_cbc", **options)  # fmt: skip
    message.build(data, filename=name, content_type="application/octet-stream")
    headers, body = wire(message)
    return headers, body, message


@pytest.mark.parametrize("compress", [False, True])
def test_large_signed_encrypted_message_arrives_whole(
    as2_server: As2Server, trading: Callable[..., Trading], compress: bool
) -> None:
    partner = trading(sign="sha256", encrypt="aes256")
    data = os.urandom(SIZE) + b"\r\n--not-a-boundary\r\n" + os.urandom(1000)
    headers, body, message = _message(partner, data, "large.bin", compress=compress)
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert (partner.upload / "large.bin").read_bytes() == data
    [row] = partner.rows()
    assert row.mic == message.mic.decode() and row.compressed == compress


def test_large_tampered_message_is_refused(as2_server: As2Server, trading: Callable[..., Trading]) -> None:
    partner = trading(sign="sha256")
    message = partner.message(mdn_mode="SYNC", sign=True, digest_alg="sha256")
    message.build(os.urandom(SIZE), filename="tampered.bin", content_type="application/octet-stream")
    headers, body = wire(message)
    at = len(body) // 2
    body = body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed/Error", "authentication-failed")
    assert not (partner.upload / "tampered.bin").exists()


@pytest.mark.parametrize(
    ("size", "ending"),
    [(SIZE, b"."), (SIZE, b"\r"), (1000, b"\r"), (1000, b"\r\r"), (1000, b"\r\n"), (1000, b"\n")],
)
def test_message_built_by_openssl(
    as2_server: As2Server, trading: Callable[..., Trading], tmp_path: Path, size: int, ending: bytes
) -> None:
    """Large or small, whatever its last bytes: `openssl cms` breaks the multipart's lines with
    bare LFs, so a part ending in CR is that CR followed by a bare-LF delimiter."""
    openssl = require_tool("openssl")
    partner = trading(sign="sha256", encrypt="aes256")
    (tmp_path / "p.key").write_text(partner.ident.key_pem)
    (tmp_path / "p.crt").write_text(partner.ident.cert_pem)
    (tmp_path / "us.crt").write_text(partner.us.cert_pem)
    data = os.urandom(size) + ending
    (tmp_path / "entity").write_bytes(
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
        b'Content-Disposition: attachment; filename="openssl-large.bin"\r\n\r\n' + data
    )
    for args in (
        ["-sign", "-binary", "-md", "sha256", "-in", "entity", "-signer", "p.crt", "-inkey", "p.key",
         "-outform", "SMIME", "-out", "signed"],
        ["-encrypt", "-binary", "-aes256", "-in", "signed", "-outform", "DER", "-out", "enveloped", "us.crt"],
    ):  # fmt: skip
        done = subprocess.run([openssl, "cms", *args], cwd=tmp_path, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
    headers = {
        "AS2-Version": "1.2", "AS2-From": partner.as2_id, "AS2-To": OUR_ID,
        "Message-ID": f"<{os.urandom(8).hex()}@openssl.test>",
        "Content-Type": 'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
    }  # fmt: skip
    response = post(as2_server.receive_url, headers, (tmp_path / "enveloped").read_bytes())
    assert response.status_code == 200, response.text
    assert (partner.upload / "openssl-large.bin").read_bytes() == data


def _signed(part: bytes, boundary: bytes = b"BOUND") -> bytes:
    return (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; '
        b'boundary="' + boundary + b'"\r\n\r\n--' + boundary + b"\r\n" + part + b"\r\n--" + boundary
        + b"\r\nContent-Type: application/pkcs7-signature\r\n\r\nSIG\r\n--" + boundary + b"--\r\n"
    )  # fmt: skip


BINARY = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
BIG = os.urandom(1024 * 1024)
BASE64 = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"


@pytest.mark.parametrize(
    "data",
    [
        _signed(BINARY + BIG),
        _signed(BINARY + BIG + b"\r\n--BOUNDARY-LIKE\r\n" + BIG[:100]),  # looks like, is not, a delimiter
        _signed(b"Content-Type: application/edi-x12\r\n\r\n" + b"ISA*00~\r\n" * 200_000),  # text: parser
        _signed(BASE64 + b"QUJD\r\n" * 300_000),
        _signed(BINARY + BIG).replace(b"\r\n", b"\n", 3),  # bare LF headers
        BINARY + BIG,
        b"Content-Type: text/plain\r\n\r\n" + b"hello\r\n" * 200_000,
        b"\r\n" + BIG,  # no headers at all
    ],
)
def test_lean_split_matches_the_email_parser(data: bytes) -> None:
    lean, full = parsing._parsed(data), email.message_from_bytes(data)
    assert lean.get_content_type() == full.get_content_type()
    assert [(p.items(), p.get_payload(decode=True)) for p in lean.walk() if not p.is_multipart()] == [
        (p.items(), p.get_payload(decode=True)) for p in full.walk() if not p.is_multipart()
    ]


def test_receiving_a_large_message_holds_few_copies(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    """Traced (Python) memory while one 4 MiB signed+encrypted message is received in-process,
    beyond the body itself: ~14 times the payload with the email parser reading it and
    pyas2lib decrypting, 2 times now (the decrypted part, then its canonical form for the MIC)."""
    partner = trading(sign="sha256", encrypt="aes256")
    size = 4 * 1024 * 1024
    headers, body, _ = _message(partner, os.urandom(size), "traced.bin")
    tracemalloc.start()
    try:
        answer = inbound.receive(list(headers.items()), body, "127.0.0.1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200 and b"processed" in answer.body and b"Error" not in answer.body
    assert peak < 3 * size, f"peak {peak / size:.1f} times the payload"


@pytest.mark.parametrize(
    ("cipher", "key_enc_alg"),
    [
        ("aes_128_cbc", "rsaes_pkcs1v15"),
        ("aes_192_cbc", "rsaes_oaep"),
        ("tripledes_192_cbc", "rsaes_pkcs1v15"),  # not AES: pyas2lib decrypts it, as before
    ],
)
def test_large_envelopes_of_other_ciphers(
    as2_server: As2Server, trading: Callable[..., Trading], cipher: str, key_enc_alg: str
) -> None:
    partner = trading(encrypt="aes256")
    data = os.urandom(SIZE)
    message = partner.message(
        mdn_mode="SYNC", sign=True, encrypt=True, enc_alg=cipher, key_enc_alg=key_enc_alg
    )
    message.build(data, filename=f"{cipher}.bin", content_type="application/octet-stream")
    response = post(as2_server.receive_url, *wire(message))
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert (partner.upload / f"{cipher}.bin").read_bytes() == data


def test_large_envelope_for_someone_else_or_corrupted_fails_decryption(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    partner = trading(encrypt="aes256")
    stranger = Identity.new("SOMEONE-ELSE-LARGE")
    message = partner.message(mdn_mode="SYNC", encrypt=True, enc_alg="aes_256_cbc")
    message.receiver.encrypt_cert = stranger.cert_pem.encode()
    message.build(os.urandom(SIZE), filename="not-ours.bin")
    response = post(as2_server.receive_url, *wire(message))
    assert judge_mdn(response, message)[:2] == ("processed/Error", "decryption-failed")

    ours = partner.message(mdn_mode="SYNC", encrypt=True, enc_alg="aes_256_cbc")
    ours.build(os.urandom(SIZE), filename="corrupted.bin")
    headers, body = wire(ours)
    # The body ends with the ciphertext. In CBC, flipping a bit of the next-to-last block flips
    # the same bit of the last plaintext block: its padding byte (1-16) becomes 0x81-0x90, which
    # never checks out. (A random tail passes the padding check about once in 256 tries.)
    garbled = bytearray(body)
    garbled[-17] ^= 0x80
    for corrupted in (
        body[:-16],  # cut short: the DER length no longer fits
        bytes(garbled),  # garbled: the padding does not check out
    ):
        response = post(as2_server.receive_url, headers, corrupted)
        assert judge_mdn(response, ours)[:2] == ("processed/Error", "decryption-failed")
    assert not (partner.upload / "not-ours.bin").exists() and not (partner.upload / "corrupted.bin").exists()
