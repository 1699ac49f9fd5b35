"""Large AS2 messages streamed through files (core.as2.bigsend, core.as2.bigreceive).

Over real HTTP, with messages just past the streaming threshold: what we send is read by
pyas2lib (the peer server) and by `openssl cms`; what pyas2lib and `openssl cms` build arrives
whole with the right MIC, streamed (openssl's bare-LF multipart/signed too); tampering and
garbled envelopes are still refused; shapes that are not streamed (compressed) still work within
TRADELANE_AS2_MAX_IN_MEMORY_BYTES and are refused clearly past it. The point — memory — is
measured on real processes by the last test.
"""

from __future__ import annotations

import base64
import email
import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.as2 import bigreceive
from core.as2 import parse as parsing
from core.as2 import receive as inbound
from core.as2 import send as outbound
from core.as2.cms_stream import NotStreamable
from core.endpoints.base import ConfigError
from tests.as2.conftest import OUR_ID, As2Server, Trading
from tests.as2.peer import PeerServer, judge_mdn, post, wire
from tests.as2.test_send import push, row_of
from tests.servers import require_tool

SIZE = max(inbound.STREAM_FROM_BYTES, outbound.STREAM_FROM_BYTES) + 12345
ROOT = Path(__file__).resolve().parents[2]


def _data() -> bytes:
    # A line that looks like a MIME delimiter inside the payload, and a CRLF at its very end.
    return os.urandom(SIZE // 2) + b"\r\n--not-a-boundary\r\n" + os.urandom(SIZE // 2) + b"\r\n"


@pytest.mark.parametrize(
    ("sign", "encrypt"), [("sha256", "aes256"), ("sha384", None), (None, "aes128"), (None, None)]
)
def test_large_file_sent_is_read_by_pyas2lib(
    as2_server: As2Server,
    trading: Callable[..., Trading],
    peer: PeerServer,
    sign: str | None,
    encrypt: str | None,
) -> None:
    options: dict[str, Any] = {"sign": sign} if sign else {}
    if encrypt:
        options["encrypt"] = encrypt
    trading(peer.me, url=peer.url, mdn="sync", mdn_sign="sha256", **options)
    data = _data()
    push(peer.me.as2_id, "out/large.bin", data)
    [got] = peer.received
    assert (got.status, got.filename, got.payload == data) == ("processed", "large.bin", True)
    row = row_of(got.message_id)
    assert row.status == "acknowledged" and row.size == len(data)
    assert (row.signed, row.encrypted) == (bool(sign), bool(encrypt))
    assert got.headers["Content-Length"] == str(len(got.raw_body))  # not chunked


def test_large_file_sent_is_read_by_openssl(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer, tmp_path: Path
) -> None:
    openssl = require_tool("openssl")
    trading(peer.me, url=peer.url, sign="sha256", encrypt="aes256", mdn="sync")
    data = _data()
    push(peer.me.as2_id, "openssl.bin", data)
    [got] = peer.received
    (tmp_path / "enveloped").write_bytes(got.raw_body)
    (tmp_path / "peer.key").write_text(peer.me.key_pem)
    (tmp_path / "peer.crt").write_text(peer.me.cert_pem)
    decrypt = [
        "-decrypt",
        "-binary",
        "-inform",
        "DER",
        "-in",
        "enveloped",
        "-inkey",
        "peer.key",
        "-out",
        "signed",
    ]
    done = subprocess.run([openssl, "cms", *decrypt], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # openssl's S/MIME reader rewrites bare LFs to CRLF, so binary content is verified detached
    # (as test_openssl_interop does): the signed part cut out at its boundaries, the signature as DER.
    signed = (tmp_path / "signed").read_bytes()
    container = email.message_from_bytes(signed)
    boundary = container.get_boundary().encode()
    (tmp_path / "content").write_bytes(signed.split(b"--" + boundary)[1][2:-2])
    signature = next(p for p in container.walk() if p.get_content_type() == "application/pkcs7-signature")
    (tmp_path / "sig.der").write_bytes(signature.get_payload(decode=True))
    verify = ["-verify", "-binary", "-noverify", "-inform", "DER", "-in", "sig.der", "-content", "content",
              "-out", "entity"]  # fmt: skip
    done = subprocess.run([openssl, "cms", *verify], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    entity = (tmp_path / "entity").read_bytes()
    head, _, body = entity.partition(b"\r\n\r\n")
    assert b"Content-Transfer-Encoding: binary" in head and body == data


def _message(partner: Trading, data: bytes, **options: Any) -> tuple[dict[str, str], bytes, Any]:
    message = partner.message(mdn_mode="SYNC", mdn_digest_alg="sha256", **options)
    message.build(data, filename="big.bin", content_type="application/octet-stream")
    headers, body = wire(message)
    return headers, body, message


@pytest.mark.parametrize(
    "options",
    [
        {"sign": True, "digest_alg": "sha256", "encrypt": True, "enc_alg": "aes_256_cbc"},
        {"sign": True, "digest_alg": "sha512"},
        {"sign": True, "digest_alg": "sha1", "encrypt": True, "enc_alg": "aes_128_cbc"},
    ],
)
def test_large_message_from_pyas2lib_arrives_whole(
    as2_server: As2Server, trading: Callable[..., Trading], options: dict[str, Any]
) -> None:
    partner = trading(sign=options["digest_alg"], encrypt="aes256" if "encrypt" in options else None)
    data = _data()
    headers, body, message = _message(partner, data, **options)
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert (partner.upload / "big.bin").read_bytes() == data
    [row] = partner.rows()
    assert row.mic == message.mic.decode() and row.size == len(data)


def test_large_unsigned_message_arrives_when_allowed(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    partner = trading(encrypt="aes256", allow_unsigned=True)
    data = _data()
    headers, body, message = _message(partner, data, encrypt=True, enc_alg="aes_192_cbc")
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert (partner.upload / "big.bin").read_bytes() == data


def _openssl_message(partner: Trading, tmp_path: Path, data: bytes, tamper: bool = False) -> bytes:
    """`data` signed then encrypted by `openssl cms`, as a sender using it does: the multipart/signed
    written with bare-LF line breaks, a MIME-Version header and a preamble line; its part's own
    headers keep their CR LF. `tamper` flips a bit of the signed content before encrypting."""
    openssl = require_tool("openssl")
    (tmp_path / "p.key").write_text(partner.ident.key_pem)
    (tmp_path / "p.crt").write_text(partner.ident.cert_pem)
    (tmp_path / "us.crt").write_text(partner.us.cert_pem)
    (tmp_path / "entity").write_bytes(_openssl_entity(data))
    sign = ["-sign", "-binary", "-md", "sha256", "-in", "entity", "-signer", "p.crt", "-inkey", "p.key",
            "-outform", "SMIME", "-out", "signed"]  # fmt: skip
    encrypt = ["-encrypt", "-binary", "-aes256", "-in", "signed", "-outform", "DER", "-out", "enveloped",
               "us.crt"]  # fmt: skip
    for args in (sign, encrypt):
        done = subprocess.run([openssl, "cms", *args], cwd=tmp_path, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        if tamper and args is sign:
            with (tmp_path / "signed").open("r+b") as f:
                f.seek(len(data) // 2)  # well inside the payload
                byte = f.read(1)[0]
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte ^ 1]))
    signed = (tmp_path / "signed").read_bytes()
    assert signed.startswith(b"MIME-Version: 1.0\n") and b"\n\nThis is an S/MIME signed message\n" in signed
    return (tmp_path / "enveloped").read_bytes()


def _openssl_entity(data: bytes) -> bytes:
    return (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
        b'Content-Disposition: attachment; filename="openssl-big.bin"\r\n\r\n' + data
    )


def _openssl_headers(partner: Trading) -> dict[str, str]:
    return {
        "AS2-Version": "1.2", "AS2-From": partner.as2_id, "AS2-To": OUR_ID,
        "Message-ID": f"<{os.urandom(8).hex()}@openssl.test>",
        "Content-Type": 'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
    }  # fmt: skip


@pytest.mark.parametrize("ending", [b"\r\n", b"\r", b"\n"])
def test_large_message_built_by_openssl_is_streamed(
    as2_server: As2Server,
    trading: Callable[..., Trading],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ending: bytes,
) -> None:
    """Bare-LF multipart lines and a preamble, as `openssl cms` writes them, are streamed (the
    in-memory cap, below the message's size, would refuse it otherwise), and a part ending in CR
    keeps it: CR then a bare-LF delimiter."""
    partner = trading(sign="sha256", encrypt="aes256")
    data = _data()[:-2] + ending
    body = _openssl_message(partner, tmp_path, data)
    monkeypatch.setenv("TRADELANE_AS2_MAX_IN_MEMORY_BYTES", str(len(body) - 1))
    response = post(as2_server.receive_url, _openssl_headers(partner), body)
    assert response.status_code == 200, response.text
    assert (partner.upload / "openssl-big.bin").read_bytes() == data
    [row] = partner.rows()
    assert row.status == "received" and row.signed and row.encrypted
    # openssl signed the entity's bytes as they are: the MIC is their digest.
    assert row.mic == base64.b64encode(hashlib.sha256(_openssl_entity(data)).digest()).decode()


def test_large_tampered_message_built_by_openssl_is_refused(
    as2_server: As2Server, trading: Callable[..., Trading], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = trading(sign="sha256", encrypt="aes256")
    body = _openssl_message(partner, tmp_path, _data()[:-2] + b"\r", tamper=True)
    monkeypatch.setenv("TRADELANE_AS2_MAX_IN_MEMORY_BYTES", str(len(body) - 1))
    response = post(as2_server.receive_url, _openssl_headers(partner), body)
    [row] = partner.rows()
    assert row.disposition == "processed/Error: authentication-failed", (response.text, row.error)
    assert not (partner.upload / "openssl-big.bin").exists()


def _multipart(eol: bytes, ending: bytes, preamble: bytes = b"", before_closing: bytes = b"") -> bytes:
    """A small multipart/signed whose delimiter lines break with `eol` (its part's headers with CR LF)."""
    return (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="B0"' + eol
        + eol + preamble + b"--B0" + eol
        + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\nhello"
        + ending + eol + b"--B0" + eol + b"Content-Type: application/pkcs7-signature" + eol
        + b"Content-Transfer-Encoding: base64" + eol + eol + b"QUJD" + eol
        + (before_closing or eol) + b"--B0--" + eol
    )  # fmt: skip


def _streamed_split(data: bytes) -> tuple[bytes, bytes]:
    """(signed part's body, signature part) as the streamed parse splits `data`."""
    f = io.BytesIO(data)
    head, start = bigreceive._head(f, 0, len(data))
    boundary = bigreceive.header_entity(head).get_boundary() or ""
    part_start, part_end, signature = bigreceive._split(f, start, len(data), b"--" + boundary.encode())
    _, body_start = bigreceive._head(f, part_start, part_end)
    return data[body_start:part_end], signature


@pytest.mark.parametrize(
    ("eol", "ending", "preamble"),
    [
        (b"\r\n", b"\r", b""),
        (b"\r\n", b"", b"A preamble\r\n"),
        (b"\n", b"\r", b"This is an S/MIME signed message\n\n"),  # as `openssl cms -sign` writes it
        (b"\n", b"\r\r", b""),
        (b"\n", b"\n", b"\n"),
        (b"\n", b"", b"one\ntwo\n"),
    ],
)
def test_streamed_split_matches_the_in_memory_parse(eol: bytes, ending: bytes, preamble: bytes) -> None:
    data = _multipart(eol, ending, preamble)
    body, signature = _streamed_split(data)
    part, signature_part = parsing._from_bytes(data).get_payload()
    assert body == part.get_payload(decode=True) == b"hello" + ending
    assert email.message_from_bytes(signature).get_payload(decode=True) == b"ABC"
    assert signature_part.get_payload(decode=True) == b"ABC"


@pytest.mark.parametrize(
    "data",
    [
        _multipart(b"\n", b"\r", before_closing=b"\r\n"),  # bare LF, then CR LF: the parser's reading
        _multipart(b"\n", b"\r").replace(b"--B0\n", b"--B0 \t\n", 1),  # transport padding
        _multipart(b"\r\n", b"").replace(b"--B0\r\n", b"--B0\t\r\n", 1),
        _multipart(b"\n", b"", preamble=b"--B0-not-a-delimiter\n"),
        _multipart(b"\r\n", b"").replace(b"\r\n", b"\r\r\n", 1),  # a bare CR ends a header line too
    ],
)
def test_shapes_the_streamed_split_leaves_to_the_email_parser(data: bytes) -> None:
    with pytest.raises(NotStreamable):
        _streamed_split(data)


@pytest.mark.parametrize(
    ("where", "expected"), [("payload", "authentication-failed"), ("envelope", "decryption-failed")]
)
def test_large_tampered_message_is_refused(
    as2_server: As2Server, trading: Callable[..., Trading], where: str, expected: str
) -> None:
    partner = trading(sign="sha256", encrypt="aes256" if where == "envelope" else None)
    options: dict[str, Any] = {"sign": True, "digest_alg": "sha256"}
    if where == "envelope":
        options.update(encrypt=True, enc_alg="aes_256_cbc")
    headers, body, message = _message(partner, _data(), **options)
    # An envelope ends with its ciphertext. Flipping the top bit of the next-to-last block's last
    # byte flips it in the last plaintext byte: a padding of 1-16 becomes 0x81-0x90, never valid.
    # (Changing the last block itself gives random padding, which checks out once in ~256.)
    at, bit = (len(body) // 2, 1) if where == "payload" else (len(body) - 17, 0x80)
    body = body[:at] + bytes([body[at] ^ bit]) + body[at + 1 :]
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed/Error", expected)
    assert not (partner.upload / "big.bin").exists()


def test_large_compressed_message_goes_in_memory_within_its_cap(
    as2_server: As2Server, trading: Callable[..., Trading], monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = trading(sign="sha256", encrypt="aes256")
    data = _data()
    options = {
        "sign": True,
        "digest_alg": "sha256",
        "encrypt": True,
        "enc_alg": "aes_256_cbc",
        "compress": True,
    }
    headers, body, message = _message(partner, data, **options)
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed", None)
    assert (partner.upload / "big.bin").read_bytes() == data

    monkeypatch.setenv("TRADELANE_AS2_MAX_IN_MEMORY_BYTES", str(len(body) - 1))
    (partner.upload / "big.bin").unlink()
    headers, body, message = _message(partner, data, **options)
    response = post(as2_server.receive_url, headers, body)
    status, detail, _mdn = judge_mdn(response, message)
    assert (status, detail) == ("processed/Error", "unexpected-processing-error")
    assert "TRADELANE_AS2_MAX_IN_MEMORY_BYTES" in str(partner.rows()[-1].error)
    assert not (partner.upload / "big.bin").exists()


def test_large_compressed_file_to_send_past_the_in_memory_cap_is_refused(
    as2_server: As2Server, trading: Callable[..., Trading], peer: PeerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    trading(peer.me, url=peer.url, sign="sha256", encrypt="aes256", compress=True, mdn="sync")
    monkeypatch.setenv("TRADELANE_AS2_MAX_IN_MEMORY_BYTES", str(SIZE - 1))
    with pytest.raises(ConfigError, match="TRADELANE_AS2_MAX_IN_MEMORY_BYTES"):
        push(peer.me.as2_id, "compressed.bin", _data())
    assert peer.received == []


def test_large_message_sent_and_received_in_memory_well_below_its_size(tmp_path: Path) -> None:
    """A 96 MiB file sent by one real process (the `as2` endpoint) to a real API process
    (uvicorn), signed, encrypted, with a signed sync MDN: each process's peak RSS grows by well
    under half the payload (bench.as2_bench measures it; it was 3 and 13 times the payload)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELANE_")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "bench.as2_bench", "--memory-only", "--big-mib", "96"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("memory-ratios ")]
    receive_ratio, send_ratio = (float(x) for x in line.split()[1:])
    assert receive_ratio < 0.5, done.stdout
    assert send_ratio < 0.5, done.stdout


def test_large_message_replayed_under_a_new_message_id_is_a_duplicate(
    as2_server: As2Server, trading: Callable[..., Trading]
) -> None:
    """The signature verified on the streamed path is recorded (core.as2.replay) as pyas2lib's is."""
    partner = trading(sign="sha256", encrypt="aes256")
    options = {"sign": True, "digest_alg": "sha256", "encrypt": True, "enc_alg": "aes_256_cbc"}
    headers, body, message = _message(partner, _data(), **options)
    assert judge_mdn(post(as2_server.receive_url, headers, body), message)[:2] == ("processed", None)
    headers["Message-ID"] = f"<{os.urandom(8).hex()}@replay.test>"
    message.message_id = headers["Message-ID"].strip("<>")
    response = post(as2_server.receive_url, headers, body)
    assert judge_mdn(response, message)[:2] == ("processed/Warning", "duplicate-document")
    assert [p.name for p in partner.upload.iterdir()] == ["big.bin"]
