"""The certificate every TLS door shares (core/tls.py): a bad operator certificate refuses the start
with a message naming the file, a combined PEM is taken, an older home's FTPS pair is adopted (FTPS
clients keep the fingerprint they trusted), and the public URL follows the API's scheme."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.supervisor import clear_text_warning
from core import certificates, tls
from core.config import Settings
from tests.servers import free_port
from tests.system import system_env


def _pair(directory: Path, name: str) -> tuple[Path, Path]:
    key_pem, cert_pem = certificates.self_signed_server("127.0.0.1")
    cert, key = directory / f"{name}_cert.pem", directory / f"{name}_key.pem"
    cert.write_text(cert_pem)
    key.write_text(key_pem)
    return cert, key


def test_a_missing_certificate_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(tls.TLSConfigError, match=f"TLS certificate file not found: {missing}"):
        tls.server_certificate(Settings(home=tmp_path, tls_cert_file=missing))


def test_a_certificate_that_does_not_match_its_key_is_refused(tmp_path: Path) -> None:
    cert, _ = _pair(tmp_path, "one")
    _, other_key = _pair(tmp_path, "two")
    with pytest.raises(tls.TLSConfigError, match="does not match its key"):
        tls.server_certificate(Settings(home=tmp_path, tls_cert_file=cert, tls_key_file=other_key))


def test_a_key_file_that_holds_no_key_is_refused(tmp_path: Path) -> None:
    cert, _ = _pair(tmp_path, "one")
    with pytest.raises(tls.TLSConfigError, match="holds no unencrypted PEM private key"):
        tls.server_certificate(Settings(home=tmp_path, tls_cert_file=cert, tls_key_file=cert))


def test_a_combined_pem_serves_as_certificate_and_key(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "one")
    combined = tmp_path / "combined.pem"
    combined.write_text(cert.read_text() + key.read_text())
    assert tls.server_certificate(Settings(home=tmp_path, tls_cert_file=combined)) == (combined, combined)


def test_the_self_signed_pair_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    cert, key = tls.server_certificate(settings)
    assert (cert, key) == (tmp_path / "tls_cert.pem", tmp_path / "tls_key.pem")
    assert (key.stat().st_mode & 0o777) == 0o600
    before = cert.read_bytes()
    assert tls.server_certificate(settings) == (cert, key) and cert.read_bytes() == before


def test_an_older_homes_ftps_certificate_is_adopted(tmp_path: Path) -> None:
    old_cert, old_key = _pair(tmp_path, "ftp")
    cert, key = tls.server_certificate(Settings(home=tmp_path))
    assert cert.read_bytes() == old_cert.read_bytes() and key.read_bytes() == old_key.read_bytes()
    assert tls.fingerprint(cert) == tls.fingerprint(old_cert)


def test_up_refuses_to_start_with_a_missing_certificate(tmp_path: Path) -> None:
    missing = tmp_path / "gone.pem"
    env = system_env(tmp_path / "home", free_port(), free_port(), TRADELANE_TLS_CERT_FILE=str(missing))
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "up"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    assert f"TLS certificate file not found: {missing}" in " ".join((run.stdout + run.stderr).split())


def test_the_public_url_follows_the_apis_scheme() -> None:
    assert Settings(api_port=8443).public_base_url == "http://127.0.0.1:8443"
    assert Settings(api_port=8443, api_tls=True).public_base_url == "https://127.0.0.1:8443"
    assert Settings(api_tls=True, host="0.0.0.0").public_origin == "https://127.0.0.1:8080"
    given = Settings(api_tls=True, public_url="https://files.acme.example")
    assert given.public_base_url == "https://files.acme.example"


def test_up_warns_when_passwords_would_cross_the_network_in_clear() -> None:
    assert clear_text_warning(Settings(host="127.0.0.1")) is None
    assert clear_text_warning(Settings(host="::1")) is None
    assert clear_text_warning(Settings(host="0.0.0.0", api_tls=True)) is None
    assert clear_text_warning(Settings(host="0.0.0.0", forwarded_allow_ips="10.0.0.5")) is None
    warning = clear_text_warning(Settings(host="0.0.0.0"))
    assert warning is not None and "send passwords in clear on 0.0.0.0:8080" in warning
    assert "TRADELANE_API_TLS=true" in warning


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("10.0.0.1,*", "'*' would let any client choose its address; name your proxies"),
        ("proxy.example", "'proxy.example' is not an IP address or network"),
    ],
)
def test_up_refuses_a_proxy_list_that_trusts_anyone_naming_the_setting(
    tmp_path: Path, value: str, words: str
) -> None:
    env = system_env(tmp_path / "home", free_port(), free_port(), TRADELANE_FORWARDED_ALLOW_IPS=value)
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "up"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    said = " ".join((run.stdout + run.stderr).split())
    assert f"error: TRADELANE_FORWARDED_ALLOW_IPS: {words}" in said
    assert "Traceback" not in said
