"""The certificate FTPS presents: the operator's, else a self-signed pair kept in TRADELANE_HOME
(built and kept by core/certificates.py, as the AS2 identity's is)."""

from __future__ import annotations

import logging
from pathlib import Path

from OpenSSL import SSL

from core import certificates
from core.config import Settings

log = logging.getLogger(__name__)

CERT_FILE = "ftp_cert.pem"
KEY_FILE = "ftp_key.pem"


def ensure_certificate(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key FTPS presents: from settings, else self-signed into TRADELANE_HOME.

    The self-signed pair (EC P-256, CN=localhost, SAN localhost + 127.0.0.1 + the configured host)
    is generated once, under a lock so two processes starting together agree on one pair, and kept
    across restarts (regenerated only if missing, unreadable, mismatched or expired).
    """
    if settings.tls_cert_file is not None:
        cert = settings.tls_cert_file.expanduser()
        key = (settings.tls_key_file or settings.tls_cert_file).expanduser()
        for path in (cert, key):
            if not path.is_file():
                raise FileNotFoundError(f"FTPS certificate file not found: {path}")
        return cert, key
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    cert, key = home / CERT_FILE, home / KEY_FILE
    made = certificates.keep_self_signed(
        cert, key, lambda: certificates.self_signed_server(settings.host), lock=home / ".ftp_cert.lock"
    )
    if made:
        log.info("generated a self-signed FTPS certificate in %s", cert)
    return cert, key


def make_ssl_context(cert: Path, key: Path) -> SSL.Context:
    """A server context: TLS 1.2+, no compression, session resumption for data connections."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.use_certificate_chain_file(str(cert))
    context.use_privatekey_file(str(key))
    context.check_privatekey()
    # Clients that insist the data connection resume the control connection's TLS session need
    # a session id context and a server-side session cache.
    context.set_session_id(b"tradelane-ftp")
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    return context
