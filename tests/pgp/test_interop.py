"""Interoperability with the gpg command line, both ways: encrypt here → gpg decrypts; gpg encrypts →
decrypt here; signatures both ways; armored and binary."""

from __future__ import annotations

import hashlib

import pytest

from tests.pgp.support import PARTNER_EMAIL, GpgCli, decrypt, encrypt, payload, streams


@pytest.mark.parametrize("armor", [False, True])
def test_encrypted_here_gpg_decrypts(partner: GpgCli, armor: bool) -> None:
    data = payload()
    source, sink = streams(data)
    result = encrypt(source, sink, [PARTNER_EMAIL], armor=armor)
    message = sink.getvalue()
    assert message.startswith(b"-----BEGIN PGP MESSAGE-----") == armor
    assert result.bytes_in == len(data) and result.input_sha256 == hashlib.sha256(data).hexdigest()
    assert result.bytes_out == len(message) and result.sha256 == hashlib.sha256(message).hexdigest()
    assert result.recipients == (partner.fingerprint,) and result.signer is None

    done = partner.run("--decrypt", data=message)
    assert done.stdout == data
    assert "DECRYPTION_OKAY" in partner.status(done)
    assert "GOODSIG" not in partner.status(done)


@pytest.mark.parametrize("armor", [False, True])
def test_signed_here_gpg_verifies(partner: GpgCli, ours: str, armor: bool) -> None:
    data = payload()
    source, sink = streams(data)
    result = encrypt(source, sink, [partner.fingerprint], sign="ours", armor=armor, filename="po 850.edi")
    assert result.signer == ours

    done = partner.run("--decrypt", data=sink.getvalue())
    status = partner.status(done)
    assert done.stdout == data
    assert "GOODSIG" in status
    assert "PLAINTEXT 62 " in status and status.split("PLAINTEXT 62 ", 1)[1].split("\n", 1)[0].endswith(
        " po%20850.edi"
    )  # the name stored inside, as gpg reports it
    assert status.split("VALIDSIG ", 1)[1].split("\n", 1)[0].endswith(ours)  # the primary key's fingerprint


@pytest.mark.parametrize("armor", [False, True])
def test_gpg_encrypted_decrypts_here(partner: GpgCli, ours: str, armor: bool) -> None:
    data = payload()
    args = ["--trust-model", "always", "--encrypt", "--recipient", "ours@example.com"]
    message = partner.run(*args, *(["--armor"] if armor else []), data=data).stdout
    source, sink = streams(message)
    result = decrypt(source, sink)
    assert sink.getvalue() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.bytes_out == len(data)
    assert result.bytes_in == len(message)
    assert result.encrypted and result.decrypted_with == ours
    assert not result.signed and not result.signature_verified and result.signer_fingerprint is None


@pytest.mark.parametrize("armor", [False, True])
def test_gpg_signed_verifies_here(partner: GpgCli, armor: bool) -> None:
    data = payload()
    args = ["--trust-model", "always", "--sign", "--encrypt", "--recipient", "ours@example.com"]
    message = partner.run(
        *args, *(["--armor"] if armor else []), "--set-filename", "po.edi", data=data
    ).stdout
    source, sink = streams(message)
    result = decrypt(source, sink, verify="required")
    assert sink.getvalue() == data
    assert result.signed and result.signature_verified
    assert result.signer_fingerprint == partner.fingerprint and result.signer_name == PARTNER_EMAIL
    assert result.literal_name == "po.edi"


def test_gpg_signed_only_verifies_here(partner: GpgCli) -> None:
    """A message that is signed but not encrypted still opens, and says it was not encrypted."""
    data = payload()
    message = partner.run("--sign", data=data).stdout
    source, sink = streams(message)
    result = decrypt(source, sink, verify="required", signers=[PARTNER_EMAIL])
    assert sink.getvalue() == data
    assert not result.encrypted and result.decrypted_with is None
    assert result.signature_verified and result.signer_fingerprint == partner.fingerprint


def test_round_trip_here_with_several_recipients(partner: GpgCli, ours: str) -> None:
    """Encrypted to the partner and to ourselves: both can open it."""
    data = payload()
    source, sink = streams(data)
    encrypt(source, sink, [PARTNER_EMAIL, "ours"], sign="ours", filename="facture été.xml")
    assert partner.run("--decrypt", data=sink.getvalue()).stdout == data
    back_source, back = streams(sink.getvalue())
    result = decrypt(back_source, back, verify="required", signers=["ours"])
    assert back.getvalue() == data and result.signer_name == "ours"
    assert result.literal_name == "facture été.xml"
