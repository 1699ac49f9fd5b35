"""The certificate FTPS presents: the one every TLS door shares (core/tls.py), and FTPS's TLS context."""

from __future__ import annotations

from pathlib import Path

from OpenSSL import SSL

from core import tls
from core.config import Settings

CERT_FILE = tls.CERT_FILE
KEY_FILE = tls.KEY_FILE


def ensure_certificate(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key FTPS presents: core/tls.py's, shared with HTTPS.

    The operator's (TRADELANE_TLS_CERT_FILE/_KEY_FILE), else a self-signed pair (EC P-256,
    CN=localhost, SAN localhost + 127.0.0.1 + the configured host) generated once into the home
    under a lock, kept across restarts (regenerated only if missing, unreadable, mismatched or
    expired); an older home's ftp_cert.pem/ftp_key.pem is adopted.
    """
    return tls.server_certificate(settings)


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
