"""core.certificates: the one place certificates and keys are made, read, written and described.

Checked against real parts where there are some: openssl reads what we make and computes the
fingerprint, and the ssl module loads each pair as a server would.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core import certificates
from core.certificates import (
    SIGN_AND_ENCRYPT,
    CertificateError,
    CertInfo,
    cert_info,
    keep_self_signed,
    load_certificate,
    load_pkcs12,
    load_private_key,
    self_signed,
    self_signed_server,
    usable_pair,
    write_private,
)


def loaded(pair: tuple[str, str]) -> tuple[PrivateKeyTypes, x509.Certificate]:
    key_pem, cert_pem = pair
    return load_private_key(key_pem.encode()), load_certificate(cert_pem.encode())


def serves(tmp_path: Path, pair: tuple[str, str]) -> None:
    """The ssl module takes the pair as a server's (it checks that key and certificate match)."""
    key_file, cert_file = tmp_path / "k.pem", tmp_path / "c.pem"
    write_private(key_file, pair[0].encode())
    write_private(cert_file, pair[1].encode())
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)


def test_sign_and_encrypt_pair_for_as2(tmp_path: Path) -> None:
    key, cert = loaded(self_signed("ACME-AS2", SIGN_AND_ENCRYPT, days=730))
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.subject == cert.issuer == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME-AS2")])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=730, minutes=5)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert not usage.critical
    assert (usage.value.digital_signature, usage.value.content_commitment, usage.value.key_encipherment) == (
        True,
        True,
        True,
    )
    assert not usage.value.key_cert_sign and not usage.value.data_encipherment
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert certificates.key_matches(key, cert)
    serves(tmp_path, self_signed("ACME-AS2", SIGN_AND_ENCRYPT, days=1))


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("127.0.0.1", []),
        ("0.0.0.0", []),
        ("::", []),
        ("10.1.2.3", [x509.IPAddress(ipaddress.ip_address("10.1.2.3"))]),
        ("ftp.example.test", [x509.DNSName("ftp.example.test")]),
    ],
)
def test_server_pair_names_the_server(tmp_path: Path, host: str, extra: list[x509.GeneralName]) -> None:
    pair = self_signed_server(host)
    key, cert = loaded(pair)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert cert.subject.rfc4514_string() == "O=tradelane (self-signed),CN=localhost"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    localhost = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    assert list(names) == localhost + extra
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=3650, minutes=5)
    serves(tmp_path, pair)


def test_fingerprint_and_dates_agree_with_openssl(tmp_path: Path) -> None:
    _, cert_pem = self_signed("FP", SIGN_AND_ENCRYPT, days=10)
    path = tmp_path / "cert.pem"
    path.write_text(cert_pem)
    out = subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-fingerprint", "-sha256", "-serial"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    said = dict(line.split("=", 1) for line in out.splitlines())
    info = cert_info(cert_pem)
    assert said["sha256 Fingerprint"] == info.sha256_fingerprint
    assert int(said["serial"], 16) == info.serial
    der = load_certificate(cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    assert cert_info(der) == info  # DER reads the same
    assert (info.subject, info.issuer) == ("CN=FP", "CN=FP")
    assert info.days_left in (9, 10) and not info.expired and info.expiring_soon
    assert not cert_info(cert_pem, warning_days=5).expiring_soon


def test_expiry_notes() -> None:
    now = datetime.now(UTC)

    def info(days: float, warning: int = 30) -> CertInfo:
        after = now + timedelta(days=days)
        return CertInfo("CN=x", "CN=x", 1, now - timedelta(days=1), after, "AA", warning_days=warning)

    assert info(400.5).expiry_note() == f"expires {(now + timedelta(days=400.5)):%Y-%m-%d} (in 400 days)"
    assert info(10.5).expiry_note().endswith(": only 10 days left, renew it")
    assert info(10.5, warning=5).expiry_note().endswith("(in 10 days)")
    past = info(-2)
    assert past.expired and past.expiry_note() == f"EXPIRED on {(now - timedelta(days=2)):%Y-%m-%d}"


def test_what_cannot_be_read_says_why() -> None:
    with pytest.raises(CertificateError, match=r"not an X\.509 certificate \(PEM or DER\)"):
        load_certificate(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateError, match=r"not an X\.509 certificate"):
        cert_info(b"\x30\x03garbage")
    key_pem, cert_pem = self_signed("K", SIGN_AND_ENCRYPT, days=1)
    key = load_private_key(key_pem.encode())
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right"),
    )
    assert certificates.private_key_pem(load_private_key(locked, "right")) == key_pem
    with pytest.raises(CertificateError, match=r"cannot read the private key \(password\?\)"):
        load_private_key(locked, "wrong")
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert certificates.private_key_pem(load_private_key(der)) == key_pem
    with pytest.raises(CertificateError, match="cannot read the private key"):
        load_private_key(b"not a key")
    cert = load_certificate(cert_pem.encode())
    other = load_private_key(self_signed("O", SIGN_AND_ENCRYPT, days=1)[0].encode())
    assert certificates.key_matches(key, cert) and not certificates.key_matches(other, cert)


def test_pkcs12() -> None:
    key_pem, cert_pem = self_signed("P12", SIGN_AND_ENCRYPT, days=1)
    key, cert = loaded((key_pem, cert_pem))
    assert isinstance(key, rsa.RSAPrivateKey)
    encryption = serialization.BestAvailableEncryption(b"pw")
    bundle = pkcs12.serialize_key_and_certificates(b"p12", key, cert, None, encryption)
    got_key, got_cert = load_pkcs12(bundle, "pw")
    assert certificates.private_key_pem(got_key) == key_pem and got_cert == cert
    with pytest.raises(CertificateError, match=r"cannot open the PKCS#12 file \(wrong password\?\)"):
        load_pkcs12(bundle, "nope")
    only_cert = pkcs12.serialize_key_and_certificates(b"p12", None, cert, None, serialization.NoEncryption())
    with pytest.raises(CertificateError, match="must hold a private key and its certificate"):
        load_pkcs12(only_cert, None)


def test_write_private_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    previous = os.umask(0)
    try:
        write_private(path, b"new secret")
    finally:
        os.umask(previous)
    assert path.read_bytes() == b"new secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]  # no temporary file left
    with pytest.raises(IsADirectoryError):
        write_private(tmp_path, b"x")  # the rename fails: the temporary file is removed
    assert sorted(p.name for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}")) == []


def test_keep_self_signed_makes_once_and_keeps(tmp_path: Path) -> None:
    cert, key, lock = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / ".lock"

    def make() -> tuple[str, str]:
        return self_signed_server("127.0.0.1")

    assert keep_self_signed(cert, key, make, lock=lock)
    assert usable_pair(cert, key)
    assert stat.S_IMODE(key.stat().st_mode) == stat.S_IMODE(cert.stat().st_mode) == 0o600
    before = cert.read_bytes()
    assert not keep_self_signed(cert, key, make, lock=lock)
    assert cert.read_bytes() == before
    # A key that is not the certificate's, an unreadable file, a pair about to expire: made again.
    key.write_text(self_signed_server("127.0.0.1")[0])
    assert not usable_pair(cert, key) and keep_self_signed(cert, key, make, lock=lock)
    assert cert.read_bytes() != before
    key.write_text("garbage")
    assert keep_self_signed(cert, key, make, lock=lock)
    expiring_key, expiring_cert = self_signed("x", SIGN_AND_ENCRYPT, days=0)
    key.write_text(expiring_key)
    cert.write_text(expiring_cert)
    assert not usable_pair(cert, key)  # valid for less than a day more
    assert keep_self_signed(cert, key, make, lock=lock) and usable_pair(cert, key)


def test_servers_starting_together_agree_on_one_pair(tmp_path: Path) -> None:
    cert, key, lock = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / ".lock"
    start = threading.Barrier(4)
    made: list[bool] = []

    def starter() -> None:
        start.wait()
        made.append(keep_self_signed(cert, key, lambda: self_signed_server("127.0.0.1"), lock=lock))

    threads = [threading.Thread(target=starter) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(made) == [False, False, False, True]
    assert usable_pair(cert, key)
