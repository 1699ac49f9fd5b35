"""`tradelane pgp key …` and the keyring behind it: names, lookups, export, private keys at rest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlmodel import select

from core import audit
from core.crypto import decrypt_json
from core.db import session_scope
from core.models import Account, PgpKey
from core.pgp import PgpKeyError, keyring
from tests.isolation import run_cli
from tests.pgp.support import (
    PARTNER_EMAIL,
    GpgCli,
    decrypt,
    encrypt,
    home_ring,
    make_gpg_cli,
    payload,
    streams,
)
from tests.tenancy import account_scope, home_scope

run = run_cli


def listed() -> dict[str, dict[str, object]]:
    return {row["name"]: row for row in json.loads(run("pgp", "key", "list", "--json"))}


def test_generate_list_export(pgp_home: Path, tmp_path: Path) -> None:
    out = run("pgp", "key", "generate", "acme-out", "--email", "edi@acme.example", "--algorithm", "ed25519")
    assert "generated acme-out" in out
    row = listed()["acme-out"]
    assert row["email"] == "edi@acme.example" and row["private"] is True
    assert row["algorithm"] == "ed25519" and row["expires"] and row["expired"] is False
    assert len(str(row["fingerprint"])) == 40
    assert "acme-out" in run("pgp", "key", "list")  # the table

    exported = run("pgp", "key", "export", "acme-out")
    assert exported.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE" not in exported
    # What a partner gets is a public key only, and gpg reads it as the same key.
    partner = make_gpg_cli(tmp_path, "gpg")
    try:
        partner.import_key(exported.encode())
        secret = partner.run("--with-colons", "--list-secret-keys", ok=False).stdout.decode()
        assert str(row["fingerprint"]) not in secret
        public = partner.run("--with-colons", "--list-keys").stdout.decode()
        assert str(row["fingerprint"]) in public
    finally:
        partner.close()


def test_generate_default_is_rsa_that_never_expires_on_request(pgp_home: Path) -> None:
    run("pgp", "key", "generate", "forever", "--email", "forever@acme.example", "--expires", "0")
    row = listed()["forever"]
    assert row["algorithm"] == "rsa3072" and row["expires"] is None


def test_import_names_by_email_or_name(pgp_home: Path, tmp_path: Path) -> None:
    other = make_gpg_cli(tmp_path, "gpg")
    try:
        other.generate("Globex <edi@globex.example>", "future-default")
        key_file = tmp_path / "globex.asc"
        key_file.write_bytes(other.export())
        assert "imported public key edi@globex.example" in run("pgp", "key", "import", str(key_file))
        row = listed()["edi@globex.example"]
        assert row["private"] is False and row["fingerprint"] == other.fingerprint
        # The same key again is refused, under any name.
        assert "already in the keyring" in run(
            "pgp", "key", "import", str(key_file), "--name", "g2", ok=False
        )
        # Its private part joins the public key already there.
        secret_file = tmp_path / "globex-secret.asc"
        secret_file.write_bytes(other.export(secret=True))
        assert "imported public and private key edi@globex.example" in run(
            "pgp", "key", "import", str(secret_file)
        )
        assert listed()["edi@globex.example"]["private"] is True
    finally:
        other.close()


def test_import_with_name_and_binary_key(pgp_home: Path, tmp_path: Path) -> None:
    other = make_gpg_cli(tmp_path, "gpg")
    try:
        other.generate("Initech <ops@initech.example>", "future-default")
        key_file = tmp_path / "initech.gpg"
        key_file.write_bytes(other.run("--export", other.fingerprint).stdout)  # binary
        run("pgp", "key", "import", str(key_file), "--name", "initech")
        assert listed()["initech"]["email"] == "ops@initech.example"
        assert "already in the keyring" in run(
            "pgp", "key", "generate", "initech", "--email", "x@initech.example", ok=False
        )
    finally:
        other.close()


def test_recipients_by_name_email_or_fingerprint(partner: GpgCli) -> None:
    ring = home_ring()
    spaced = " ".join(partner.fingerprint[i : i + 4] for i in range(0, 40, 4)).lower()
    for ident in (PARTNER_EMAIL, partner.fingerprint, spaced):
        assert ring.find(ident).fingerprint == partner.fingerprint
        source, sink = streams(b"hello")
        assert encrypt(source, sink, [ident]).recipients == (partner.fingerprint,)
    with pytest.raises(PgpKeyError, match="no key 'nobody' in the PGP keyring"):
        ring.find("nobody")


def test_private_key_is_encrypted_at_rest(pgp_home: Path, ours: str) -> None:
    with session_scope() as session:
        row = session.exec(select(PgpKey).where(PgpKey.name == "ours")).one()
    assert row.private_key is not None
    assert "PRIVATE" not in row.private_key and "BEGIN PGP" not in row.private_key
    opened = decrypt_json(row.private_key)
    assert set(opened) == {"key", "passphrase", "keygrips"} and opened["passphrase"] is None
    assert "PRIVATE" not in row.public_key


def test_passphrase_protected_private_key(
    pgp_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A protected private key needs its passphrase at import; then it decrypts without a prompt."""
    other = make_gpg_cli(tmp_path, "gpg")
    try:
        other.run(
            "--pinentry-mode", "loopback", "--passphrase", "s3cret", "--quick-gen-key",
            "Hooli <edi@hooli.example>", "future-default", "default", "1y",
        )  # fmt: skip
        listing = other.run("--with-colons", "--list-keys").stdout.decode()
        other.fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr")
        )
        key_file = tmp_path / "hooli-secret.asc"
        key_file.write_bytes(
            other.run(
                "--armor", "--pinentry-mode", "loopback", "--passphrase", "s3cret",
                "--export-secret-keys", other.fingerprint,
            ).stdout
        )  # fmt: skip
        assert "--passphrase" in run("pgp", "key", "import", str(key_file), ok=False)
        assert "passphrase is wrong" in run(
            "pgp", "key", "import", str(key_file), "--passphrase", "nope", ok=False
        )
        monkeypatch.setenv("TRADELANE_PGP_PASSPHRASE", "s3cret")
        run("pgp", "key", "import", str(key_file), "--name", "hooli")
        data = payload()
        message = other.run("--trust-model", "always", "--encrypt", "-r", other.fingerprint, data=data).stdout
        sink = io.BytesIO()
        result = decrypt(io.BytesIO(message), sink)
        assert sink.getvalue() == data and result.decrypted_with == other.fingerprint
        # It signs too, without a prompt; gpg verifies the signature.
        sealed = io.BytesIO()
        encrypt(io.BytesIO(data), sealed, ["hooli"], sign="hooli")
        done = other.run(
            "--pinentry-mode", "loopback", "--passphrase", "s3cret", "--decrypt", data=sealed.getvalue()
        )
        assert done.stdout == data and f"VALIDSIG {other.fingerprint}" in other.status(done)
    finally:
        other.close()


def test_remove(pgp_home: Path) -> None:
    run("pgp", "key", "generate", "temporary", "--email", "tmp@acme.example", "--algorithm", "ed25519")
    assert "removed temporary" in run("pgp", "key", "remove", "tmp@acme.example")
    assert "temporary" not in listed()
    assert "no key 'temporary'" in run("pgp", "key", "remove", "temporary", ok=False)


def test_keys_belong_to_one_account(pgp_home: Path, ours: str) -> None:
    """Another account's keyring neither sees nor lends our keys, even under the same name."""
    with session_scope() as session:
        other = Account(name="other-company")
        session.add(other)
        session.flush()
        assert other.id is not None
        theirs = keyring.generate_key(
            session, account_scope(session, "other-company"), "ours", "ops@other.example", algorithm="ed25519"
        )
    assert theirs.fingerprint != ours
    with session_scope() as session:
        assert [
            k.fingerprint for k in keyring.load(session, account_scope(session, "other-company")).keys
        ] == [theirs.fingerprint]
    assert home_ring().find("ours").fingerprint == ours
    with session_scope() as session:
        assert theirs.fingerprint not in {
            k.fingerprint for k in keyring.list_keys(session, home_scope(session))
        }
        with pytest.raises(PgpKeyError):
            keyring.export_public(session, home_scope(session), theirs.fingerprint)


def test_changes_are_audited(pgp_home: Path) -> None:
    run("pgp", "key", "generate", "audited", "--email", "audit@acme.example", "--algorithm", "ed25519")
    run("pgp", "key", "remove", "audited")
    with session_scope() as session:
        found = [
            (e.action, e.target, e.detail.get("private"))
            for e in audit.events(session, home_scope(session), action="pgp")
        ]
    assert ("pgp.key.generate", "audited", True) in found
    assert ("pgp.key.remove", "audited", True) in found
