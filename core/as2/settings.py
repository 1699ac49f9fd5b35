"""AS2 settings (prefix TRADELANE_AS2_), kept apart from the core Settings object."""

from __future__ import annotations

import os
import threading

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config import get_settings

MIB = 1024 * 1024


_PREFIX = "TRADELANE_AS2_"


class As2Settings(BaseSettings):
    """What AS2 can be told. Read on each use (as2_settings()), so tests and `up` see changes at once."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")

    # Largest AS2 message accepted on POST /as2/receive (the HTTP body, after any signing,
    # compression and encryption) and largest payload the `as2` endpoint sends: past it the
    # sender gets 413 with a clear message. Large messages stream through files (core.as2.bigsend,
    # core.as2.bigreceive), so this bounds disk, not memory.
    max_message_bytes: int = 2048 * MIB
    # Largest message processed in memory by pyas2lib (several copies of it), for the shapes the
    # streaming paths do not take on: compressed, 3DES/RC2, base64 bodies, text canonicalization.
    max_in_memory_bytes: int = 100 * MIB
    # Largest MDN accepted on POST /as2/mdn or in a synchronous answer.
    max_mdn_bytes: int = 1 * MIB
    # The URL partners post asynchronous MDNs to; default http://TRADELANE_HOST:TRADELANE_API_PORT/as2/mdn.
    public_mdn_url: str | None = None
    # HTTP timeout for sending a message and waiting for a synchronous MDN, and for posting MDNs.
    http_timeout_seconds: float = 120.0
    # Async MDNs we owe partners: how many POSTs, and the first pause between them (doubles).
    mdn_delivery_attempts: int = 6
    mdn_retry_seconds: float = 5.0
    # Async MDNs may go to loopback, link-local and private addresses (a partner on the same
    # network, tests on 127.0.0.1). Off: such a URL is refused, after DNS resolution and again on
    # connecting, whatever the partner's profile allows.
    allow_private_mdn_urls: bool = False
    # A signed message whose signature was already received within this window is a replay
    # (answered `duplicate-document`, not delivered), whatever its Message-ID.
    duplicate_window_seconds: float = 3 * 24 * 3600.0
    # How often the API's AS2 worker looks for async MDNs to deliver and messages to resend.
    sweep_seconds: float = 1.0
    # Where spooled payloads and messages kept for resends live; default TRADELANE_HOME/as2
    # (with TRADELANE_STORAGE_URL: its .as2 folder, which every role shares).
    spool_dir: str | None = None
    # Warn about certificates expiring within this many days.
    cert_warning_days: int = 30


_settings_lock = threading.Lock()
_settings: tuple[tuple[tuple[str, str], ...], As2Settings] | None = None


def as2_settings() -> As2Settings:
    """The AS2 settings as the environment says now (treat as read-only).

    Built again only when a TRADELANE_AS2_ variable changed: building them reads and validates
    the whole environment (about 1 ms), which a received message used to pay three times.
    """
    global _settings
    key = tuple(sorted((k.upper(), v) for k, v in os.environ.items() if k.upper().startswith(_PREFIX)))
    current = _settings
    if current is not None and current[0] == key:
        return current[1]
    settings = As2Settings()
    with _settings_lock:
        _settings = (key, settings)
    return settings


_client: tuple[int, httpx.Client] | None = None
_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """One pooled HTTP client per process (thread-safe; creating one costs ~20 ms of TLS set-up).

    Keyed by pid: a forked flow-run process must not share its parent's connections.
    """
    global _client
    with _client_lock:
        if _client is None or _client[0] != os.getpid():
            client = httpx.Client(
                timeout=as2_settings().http_timeout_seconds, headers={"User-Agent": "tradelane AS2"}
            )
            _client = (os.getpid(), client)
        return _client[1]


def default_mdn_url() -> str:
    configured = as2_settings().public_mdn_url
    if configured:
        return configured
    s = get_settings()
    return f"http://{s.host}:{s.api_port}/as2/mdn"


def spool_root() -> str:
    """The AS2 working directory (created on demand)."""
    configured = as2_settings().spool_dir
    settings = get_settings()
    # With shared storage, the API (which resends) and the runs (which send) may be on different
    # machines: the spool lives in the storage every role shares (a dot-folder no partner can name).
    default = settings.mailbox_root / ".as2" if settings.storage_url else settings.home_dir / "as2"
    path = configured or str(default)
    os.makedirs(path, exist_ok=True)
    return path
