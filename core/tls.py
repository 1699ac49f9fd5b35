"""The one server certificate every TLS door presents: FTPS and, with TRADELANE_API_TLS, the API port
(REST API, docs, web pages, AS2).

The operator's (`TRADELANE_TLS_CERT_FILE`, and `TRADELANE_TLS_KEY_FILE` unless the certificate file
holds the key too), checked at start; else a self-signed pair generated once into the home
(`tls_cert.pem`, `tls_key.pem`, built and kept by core/certificates.py) and kept across restarts. A
home from before this module has FTPS's own `ftp_cert.pem`/`ftp_key.pem`: that pair is adopted, so
FTPS clients that trusted its fingerprint keep trusting it and HTTPS presents the same one.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core import certificates
from core.config import Settings

log = logging.getLogger(__name__)

CERT_FILE = "tls_cert.pem"
KEY_FILE = "tls_key.pem"
LOCK_FILE = ".tls_cert.lock"
# What FTPS kept in the home before the certificate was shared.
OLD_FTP_PAIR = ("ftp_cert.pem", "ftp_key.pem")


class TLSConfigError(RuntimeError):
    """The operator's certificate or key cannot be used; the message says which file and why.

    A RuntimeError, so `tradelane up` refuses to start with it as it does for a busy port."""


def server_certificate(settings: Settings) -> tuple[Path, Path]:
    """(certificate file, key file) that every TLS door presents."""
    if settings.tls_cert_file is not None:
        cert = settings.tls_cert_file.expanduser()
        key = (settings.tls_key_file or settings.tls_cert_file).expanduser()
        check_pair(cert, key)
        return cert, key
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    cert, key = home / CERT_FILE, home / KEY_FILE
    _adopt_old_ftp_pair(home, cert, key)
    made = certificates.keep_self_signed(
        cert, key, lambda: certificates.self_signed_server(settings.host), lock=home / LOCK_FILE
    )
    if made:
        log.info("generated a self-signed TLS certificate in %s (SHA-256 %s)", cert, fingerprint(cert))
    return cert, key


def check_pair(cert: Path, key: Path) -> None:
    """Refuse, with a message naming the file, a certificate or key that is missing or unusable."""
    for path in dict.fromkeys((cert, key)):
        if not path.is_file():
            raise TLSConfigError(f"TLS certificate file not found: {path}")
    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except ValueError:
        raise TLSConfigError(f"TLS certificate file {cert} holds no PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise TLSConfigError(f"TLS key file {key} holds no unencrypted PEM private key") from None
    if not certificates.key_matches(private_key, certificate):
        raise TLSConfigError(f"TLS certificate file {cert} does not match its key {key}")


def fingerprint(cert: Path) -> str:
    """The certificate's SHA-256 fingerprint as browsers and `openssl x509 -fingerprint` show it."""
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def _adopt_old_ftp_pair(home: Path, cert: Path, key: Path) -> None:
    old_cert, old_key = (home / name for name in OLD_FTP_PAIR)
    if cert.exists() or not old_cert.exists():
        return
    with open(home / LOCK_FILE, "a") as held:  # the lock keep_self_signed takes: one writer at a time
        fcntl.flock(held, fcntl.LOCK_EX)
        if cert.exists() or not certificates.usable_pair(old_cert, old_key):
            return
        for source, target in ((old_key, key), (old_cert, cert)):  # the key first: cert marks done
            certificates.write_private(target, source.read_bytes())
    log.info("the FTPS certificate %s now serves every TLS door, as %s", old_cert, cert)
