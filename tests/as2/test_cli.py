"""`tradelane as2 ...`: identity, partner profiles, messages."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from sqlmodel import select

from core import partners
from core.as2 import identity
from core.db import session_scope
from core.models import As2Organization
from tests.as2.conftest import As2Server
from tests.as2.peer import Identity
from tests.isolation import run_cli
from tests.tenancy import home_scope

run = run_cli


def test_org_create_cert_show(as2_server: As2Server, tmp_path: Path) -> None:
    run("as2", "org", "create", "--as2-id", "CLI-ORG")
    pem = run("as2", "org", "cert", "--as2-id", "CLI-ORG")
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.subject.rfc4514_string() == "CN=CLI-ORG"
    assert "already exists" in run("as2", "org", "create", "--as2-id", "CLI-ORG", ok=False)
    shown = json.loads(run("as2", "org", "show", "--json"))
    assert any(o["as2_id"] == "CLI-ORG" and o["days_left"] > 700 for o in shown)
    with session_scope() as session:
        org = session.exec(select(As2Organization).where(As2Organization.as2_id == "CLI-ORG")).one()
        assert "PRIVATE KEY" not in org.private_key  # encrypted at rest
        assert "BEGIN PRIVATE KEY" in identity.private_key_pem(org)


def _key_and_cert(name: str, days: int) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def test_org_import_p12_and_pem_with_expiry_warning(as2_server: As2Server, tmp_path: Path) -> None:
    key, cert = _key_and_cert("P12-ORG", days=10)
    p12 = tmp_path / "org.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"org", key, cert, None, serialization.BestAvailableEncryption(b"secret")
        )
    )
    out = run("as2", "org", "create", "--as2-id", "P12-ORG", "--p12", str(p12), "--p12-password", "secret")
    assert "renew it" in out  # expires in 10 days: warned about
    assert "wrong password" in run(
        "as2", "org", "create", "--as2-id", "P12-X", "--p12", str(p12), "--p12-password", "nope", ok=False
    )
    key_file, cert_file = tmp_path / "k.pem", tmp_path / "c.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    run("as2", "org", "create", "--as2-id", "PEM-ORG", "--key", str(key_file), "--cert", str(cert_file))
    other_key, _ = _key_and_cert("X", 30)
    key_file.write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert "does not belong" in run(
        "as2",
        "org",
        "create",
        "--as2-id",
        "PEM-2",
        "--key",
        str(key_file),
        "--cert",
        str(cert_file),
        ok=False,
    )


def test_partner_add_list_remove_and_messages(as2_server: As2Server, tmp_path: Path) -> None:
    ident = Identity.new("CLI-PARTNER")
    cert = tmp_path / "partner.crt"
    cert.write_text(ident.cert_pem)
    with session_scope() as session:
        partners.add(session, home_scope(session), "cli-as2-mailbox", password="pw-" + os.urandom(8).hex())
    run(
        "as2", "partner", "add", "CLI-PARTNER", "--mailbox", "cli-as2-mailbox", "--url", "http://127.0.0.1:9/as2",
        "--cert", str(cert), "--sign", "sha256", "--encrypt", "aes256", "--compress", "--mdn", "async",
        "--mdn-sign", "sha256", "--mdn-url", "https://us.example/as2/mdn",
    )  # fmt: skip
    [row] = [p for p in json.loads(run("as2", "partner", "list", "--json")) if p["as2_id"] == "CLI-PARTNER"]
    assert row["mailbox"] == "cli-as2-mailbox" and row["encrypt"] == "aes256" and row["mdn"] == "async"
    assert row["compress"] and row["mdn_url"] == "https://us.example/as2/mdn"
    run("as2", "partner", "list")
    assert "unknown cipher" in run(
        "as2", "partner", "add", "BAD", "--mailbox", "cli-as2-mailbox", "--url", "http://x/as2",
        "--cert", str(cert), "--encrypt", "rot13", ok=False,
    )  # fmt: skip
    assert "no partner named" in run(
        "as2",
        "partner",
        "add",
        "BAD",
        "--mailbox",
        "nobody",
        "--url",
        "http://x/as2",
        "--cert",
        str(cert),
        ok=False,
    )
    run("as2", "partner", "remove", "CLI-PARTNER")
    assert "CLI-PARTNER" not in run("as2", "partner", "list", "--json")
    messages = json.loads(run("as2", "messages", "--json", "--limit", "500"))
    assert isinstance(messages, list)
    run("as2", "messages")
