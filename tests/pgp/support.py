"""PGP test fixtures: a tradelane home with a keyring, and a partner's real GnuPG home driven through
the `gpg` command line (the other side of every interoperability test)."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core import db, pgp
from core.db import session_scope
from core.pgp import keyring
from core.pgp.keyring import Keyring
from core.pgp.streams import DecryptResult, EncryptResult
from tests.isolation import isolated_home
from tests.servers import require_tool
from tests.tenancy import home_scope

PARTNER_EMAIL = "partner@example.com"


def home_ring() -> Keyring:
    """The home account's keyring, as a flow of the home account loads it."""
    with session_scope() as session:
        return keyring.load(session, home_scope(session))


def encrypt(*args: Any, **kwargs: Any) -> EncryptResult:
    """`core.pgp.encrypt` with the home account's keyring unless the test gives one."""
    kwargs.setdefault("keyring", home_ring())
    return pgp.encrypt(*args, **kwargs)


def decrypt(*args: Any, **kwargs: Any) -> DecryptResult:
    """`core.pgp.decrypt` with the home account's keyring unless the test gives one."""
    kwargs.setdefault("keyring", home_ring())
    return pgp.decrypt(*args, **kwargs)


@dataclass
class GpgCli:
    """A GnuPG home of its own, used only through the gpg command line, as a partner would."""

    home: Path
    fingerprint: str = ""

    def run(self, *args: str, data: bytes = b"", ok: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = [require_tool("gpg"), "--homedir", str(self.home), "--batch", "--yes", "--status-fd", "2"]
        done = subprocess.run([*command, *args], input=data, capture_output=True, check=False, timeout=120)
        if ok:
            assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done

    def generate(self, user_id: str, algorithm: str = "default") -> str:
        self.run("--passphrase", "", "--quick-gen-key", user_id, algorithm, "default", "1y")
        listing = self.run("--with-colons", "--list-secret-keys", user_id).stdout.decode()
        self.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
        return self.fingerprint

    def export(self, secret: bool = False) -> bytes:
        what = "--export-secret-keys" if secret else "--export"
        return self.run(
            "--armor", "--pinentry-mode", "loopback", "--passphrase", "", what, self.fingerprint
        ).stdout

    def import_key(self, armored: bytes) -> None:
        self.run("--import", data=armored)

    def status(self, done: subprocess.CompletedProcess[bytes]) -> str:
        return done.stderr.decode(errors="replace")

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"], check=False)


def make_gpg_cli(root: Path, name: str) -> GpgCli:
    home = root / name
    home.mkdir(mode=0o700)
    return GpgCli(home)


@pytest.fixture(scope="module")
def pgp_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    saved = os.environ.pop("TRADELANE_SECRET_KEY", None)
    try:
        with isolated_home(tmp_path_factory.mktemp("tradelane-pgp")) as home:
            db.init_db()
            yield home
    finally:
        if saved is not None:
            os.environ["TRADELANE_SECRET_KEY"] = saved


@pytest.fixture(scope="module")
def ours(pgp_home: Path) -> str:
    """Our key pair "ours" (generated here), its fingerprint."""
    with session_scope() as session:
        return keyring.generate_key(
            session, home_scope(session), "ours", "ours@example.com", algorithm="ed25519"
        ).fingerprint


@pytest.fixture(scope="module")
def partner(pgp_home: Path, ours: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgCli]:
    """A partner with GnuPG's default key (RSA on GnuPG 2.2), who has our public key and we theirs."""
    cli = make_gpg_cli(tmp_path_factory.mktemp("gpg-partner"), "home")
    try:
        cli.generate(f"Partner <{PARTNER_EMAIL}>")
        with session_scope() as session:
            keyring.import_key(session, home_scope(session), cli.export())
            cli.import_key(keyring.export_public(session, home_scope(session), "ours").encode())
        yield cli
    finally:
        cli.close()


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgCli]:
    """Someone whose key is not in our keyring at all."""
    cli = make_gpg_cli(tmp_path_factory.mktemp("gpg-stranger"), "home")
    try:
        cli.generate("Stranger <stranger@example.com>", "future-default")
        yield cli
    finally:
        cli.close()


def payload(size: int = 200_000) -> bytes:
    """Bytes that are neither all alike nor all random (gpg compresses them a little)."""
    return b"".join(f"line {i:07d} {os.urandom(8).hex()}\n".encode() for i in range(size // 30))[:size]


def streams(data: bytes) -> tuple[io.BytesIO, io.BytesIO]:
    return io.BytesIO(data), io.BytesIO()
