"""Hostile PGP input: each bad file ends in one clear error of its own type, and leaves no key
material, temporary GnuPG home or gpg-agent behind."""

from __future__ import annotations

import glob
import io
import os
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.db import session_scope
from core.pgp import (
    PgpBadSignatureError,
    PgpCorruptError,
    PgpError,
    PgpKeyError,
    PgpMissingSignatureError,
    PgpNoKeyError,
    PgpNotPgpError,
    PgpTooLargeError,
    PgpUnavailableError,
    keyring,
)
from tests.pgp import support
from tests.pgp.support import PARTNER_EMAIL, GpgCli, decrypt, encrypt, make_gpg_cli, payload
from tests.tenancy import home_scope

# The keyring home and the gpg command-line parties of tests/pgp, for this module.
pgp_home, ours, partner, stranger = support.pgp_home, support.ours, support.partner, support.stranger

TO_US = ["--trust-model", "always", "--encrypt", "--recipient", "ours@example.com"]


def open_message(message: bytes, **kwargs: object) -> bytes:
    sink = io.BytesIO()
    decrypt(io.BytesIO(message), sink, **kwargs)
    return sink.getvalue()


def gpg_homes() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "tradelane-gpg-*")))


def our_agents(homes: set[str]) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in ps.splitlines() if "gpg-agent" in line and any(h in line for h in homes)]


@pytest.mark.parametrize(
    "data, says",
    [
        (b"", "empty"),
        (b"ISA*00*          *00*          *ZZ*ACME~", "not OpenPGP data"),
        (bytes(range(256)) * 4, "not OpenPGP data"),
        (b"\x00\x01\x02 binary junk", "not OpenPGP data"),
        (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF\n", "armored PGP PUBLIC KEY BLOCK, not a message"),
    ],
)
def test_not_pgp(ours: str, data: bytes, says: str) -> None:
    with pytest.raises(PgpNotPgpError, match=says):
        open_message(data)


@pytest.mark.parametrize("armor", [False, True])
def test_truncated(partner: GpgCli, ours: str, armor: bool) -> None:
    message = partner.run(*TO_US, *(["--armor"] if armor else []), data=payload()).stdout
    for cut in (len(message) // 2, len(message) - 40):
        with pytest.raises(PgpCorruptError, match="damaged or truncated"):
            open_message(message[:cut])


def test_truncated_file_on_disk(partner: GpgCli, ours: str, tmp_path: Path) -> None:
    """The same refusal when gpg reads the file by name rather than from a pipe."""
    message = partner.run(*TO_US, data=payload()).stdout
    path = tmp_path / "cut.gpg"
    path.write_bytes(message[: len(message) // 2])
    with path.open("rb") as source, pytest.raises(PgpCorruptError, match="damaged or truncated"):
        decrypt(source, io.BytesIO())
    path.write_bytes(b"plain text, not PGP")
    with path.open("rb") as source, pytest.raises(PgpNotPgpError):
        decrypt(source, io.BytesIO())


def test_compression_bomb_stops_at_the_limit(partner: GpgCli, ours: str) -> None:
    """64 MiB of zeros compress to a small message; with a limit, decryption stops there."""
    zeros = bytes(64 * 1024 * 1024)
    message = partner.run(*TO_US, "--compress-algo", "zlib", "--compress-level", "9", data=zeros).stdout
    assert len(message) < 1024 * 1024
    sink = io.BytesIO()
    with pytest.raises(PgpTooLargeError, match="larger than the limit of 1048576 bytes"):
        decrypt(io.BytesIO(message), sink, max_bytes=1024 * 1024)
    assert len(sink.getvalue()) <= 1024 * 1024
    big_enough = io.BytesIO()
    assert decrypt(io.BytesIO(message), big_enough, max_bytes=len(zeros)).bytes_out == len(zeros)


def test_compression_bomb_into_a_file_gpg_writes_stops_at_the_limit(
    partner: GpgCli, ours: str, tmp_path: Path
) -> None:
    """The same when gpg writes the staged file itself: the file's size is watched as it grows,
    gpg is stopped past the limit and nothing is staged."""
    from core.transforms.staging import Staging

    zeros = bytes(256 * 1024 * 1024)
    message = partner.run(*TO_US, "--compress-algo", "zlib", "--compress-level", "9", data=zeros).stdout
    assert len(message) < 2 * 1024 * 1024
    stage = Staging(tmp_path / "stage")
    too_large = pytest.raises(PgpTooLargeError, match="larger than the limit of 1048576 bytes")
    with too_large, stage.create_for_program("bomb") as out:
        decrypt(io.BytesIO(message), out, max_bytes=1024 * 1024)
    assert stage.files == [] and list((tmp_path / "stage").iterdir()) == []
    assert out.size <= 1024 * 1024 + 4 * 1024 * 1024  # hashed no further than one read past it
    with stage.create_for_program("zeros") as enough:
        assert decrypt(io.BytesIO(message), enough, max_bytes=len(zeros)).bytes_out == len(zeros)
    assert stage.files[0].size == len(zeros)


def test_tampered_ciphertext(partner: GpgCli, ours: str) -> None:
    message = bytearray(partner.run(*TO_US, data=payload()).stdout)
    message[len(message) // 2] ^= 0x01
    with pytest.raises(PgpCorruptError):
        open_message(bytes(message))


def test_encrypted_to_a_key_we_only_have_the_public_part_of(partner: GpgCli) -> None:
    message = partner.run("--trust-model", "always", "--encrypt", "-r", PARTNER_EMAIL, data=b"x").stdout
    with pytest.raises(PgpNoKeyError, match=f"public key '{PARTNER_EMAIL}': its private part is not here"):
        open_message(message)


def test_encrypted_to_a_stranger(stranger: GpgCli, ours: str) -> None:
    message = stranger.run(
        "--trust-model", "always", "--encrypt", "-r", stranger.fingerprint, data=b"x"
    ).stdout
    with pytest.raises(PgpNoKeyError, match="holds the private part of none of them"):
        open_message(message)


def test_encrypted_with_a_passphrase(stranger: GpgCli, ours: str) -> None:
    message = stranger.run(
        "--pinentry-mode", "loopback", "--passphrase", "pw", "--symmetric", data=b"secret"
    ).stdout
    with pytest.raises(PgpNoKeyError, match="encrypted with a passphrase"):
        open_message(message)


def test_missing_signature_when_required(partner: GpgCli, ours: str) -> None:
    message = partner.run(*TO_US, data=b"unsigned").stdout
    assert open_message(message) == b"unsigned"  # optional: fine
    with pytest.raises(PgpMissingSignatureError, match="not signed"):
        open_message(message, verify="required")


def test_bad_signature_inside_encryption(partner: GpgCli, ours: str, tmp_path: Path) -> None:
    """Signed by the partner, then one byte of the signed content changed, then encrypted to us."""
    data = payload(5000)
    signed = bytearray(partner.run("--compress-level", "0", "--sign", data=data).stdout)
    signed[len(signed) // 2] ^= 0x01
    message = partner.run(*TO_US, "--no-literal", "--compress-level", "0", data=bytes(signed)).stdout
    for verify in ("optional", "required"):
        with pytest.raises(PgpBadSignatureError, match="bad signature"):
            open_message(message, verify=verify)


def test_bad_signature_on_a_signed_only_message(partner: GpgCli, ours: str) -> None:
    signed = bytearray(partner.run("--compress-level", "0", "--sign", data=payload(5000)).stdout)
    signed[len(signed) // 2] ^= 0x01
    with pytest.raises(PgpBadSignatureError, match="changed after it was signed"):
        open_message(bytes(signed))


def test_signature_by_an_unknown_key(stranger: GpgCli, partner: GpgCli, ours: str) -> None:
    stranger.import_key(partner.run("--armor", "--export", "ours@example.com").stdout)
    message = stranger.run(*TO_US, "--sign", data=b"from a stranger").stdout
    sink = io.BytesIO()
    result = decrypt(io.BytesIO(message), sink)  # optional: opens, and says it could not verify
    assert sink.getvalue() == b"from a stranger"
    assert result.signed and not result.signature_verified and result.signer_name is None
    with pytest.raises(PgpBadSignatureError, match="not in the PGP keyring"):
        open_message(message, verify="required")


def test_signature_by_a_key_that_is_not_an_accepted_signer(partner: GpgCli, ours: str) -> None:
    message = partner.run(*TO_US, "--sign", data=b"signed by partner").stdout
    assert open_message(message, verify="required", signers=[PARTNER_EMAIL]) == b"signed by partner"
    with pytest.raises(PgpBadSignatureError, match="not one of the accepted signers"):
        open_message(message, verify="required", signers=["ours"])


def test_unknown_or_unusable_keys_refused_before_any_work(partner: GpgCli, ours: str) -> None:
    with pytest.raises(PgpKeyError, match=r"no key 'nobody@example\.com'"):
        encrypt(io.BytesIO(b"x"), io.BytesIO(), ["nobody@example.com"])
    with pytest.raises(PgpKeyError, match="only its public part"):
        encrypt(io.BytesIO(b"x"), io.BytesIO(), ["ours"], sign=PARTNER_EMAIL)
    with pytest.raises(PgpKeyError, match="no recipients"):
        encrypt(io.BytesIO(b"x"), io.BytesIO(), [])
    with pytest.raises(PgpKeyError, match="no key 'nobody'"):
        decrypt(io.BytesIO(b"x"), io.BytesIO(), signers=["nobody"])
    with pytest.raises(PgpError, match="verify must be one of optional, required"):
        decrypt(io.BytesIO(b"x"), io.BytesIO(), verify="always")


def test_expired_recipient(ours: str, tmp_path: Path) -> None:
    old = make_gpg_cli(tmp_path, "gpg")
    try:
        # A key that expired yesterday (gpg accepts a past ISO date for --quick-gen-key only via
        # --faked-system-time: made two days ago, valid for one).
        past = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y%m%dT%H%M%S")
        old.run("--faked-system-time", past, "--passphrase", "", "--quick-gen-key",
                "Old <old@example.com>", "future-default", "default", "1d")  # fmt: skip
        listing = old.run("--with-colons", "--list-keys").stdout.decode()
        old.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
        with session_scope() as session:
            keyring.import_key(session, home_scope(session), old.export())
        with pytest.raises(PgpKeyError, match="expired on"):
            encrypt(io.BytesIO(b"x"), io.BytesIO(), ["old@example.com"])
    finally:
        old.close()


def test_bad_key_files(pgp_home: Path, partner: GpgCli, stranger: GpgCli) -> None:
    with session_scope() as session:
        with pytest.raises(PgpKeyError, match="holds no OpenPGP key"):
            keyring.import_key(session, home_scope(session), b"not a key at all")
        with pytest.raises(PgpKeyError, match="holds 2 keys"):
            keyring.import_key(session, home_scope(session), partner.export() + stranger.export())


def test_failing_sink_and_source_surface_and_leave_nothing_behind(
    partner: GpgCli, ours: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process's throwaway homes in a folder of their own: another test worker (or program) may
    # have one of its own open in /tmp meanwhile. Short, for gpg-agent's socket path.
    private = tempfile.mkdtemp(prefix="tlgpg-")
    monkeypatch.setattr(tempfile, "tempdir", private)
    before = gpg_homes()

    class FullDisk:
        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    class BrokenSource:
        def read(self, size: int = -1) -> bytes:
            raise ConnectionError("source went away")

    message = partner.run(*TO_US, data=payload()).stdout
    with pytest.raises(OSError, match="No space left"):
        decrypt(io.BytesIO(message), FullDisk())
    with pytest.raises(ConnectionError, match="source went away"):
        encrypt(BrokenSource(), io.BytesIO(), ["ours"], sign="ours")
    with pytest.raises(PgpError):
        open_message(message[:100])
    left = gpg_homes() - before
    assert not left, left
    assert not our_agents(left | gpg_homes()), "a gpg-agent of a throwaway home is still running"
    os.rmdir(private)  # empty: nothing was left in it


def test_without_gpg_every_command_says_how_to_install_it(
    pgp_home: Path, ours: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from core.pgp.gnupg_home import gpg_binary, gpgconf_binary

    gpg_binary.cache_clear()
    gpgconf_binary.cache_clear()
    monkeypatch.setenv("PATH", str(pgp_home / "no-programs-here"))
    try:
        with pytest.raises(PgpUnavailableError, match="apt-get install gnupg"):
            encrypt(io.BytesIO(b"x"), io.BytesIO(), ["ours"])
        result = CliRunner().invoke(app, ["pgp", "key", "generate", "k", "--email", "k@example.com"])
        assert result.exit_code == 1 and "gpg program is not installed" in result.output
        assert "Traceback" not in result.output
    finally:
        gpg_binary.cache_clear()
        gpgconf_binary.cache_clear()
