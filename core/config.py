"""Settings: one object, read from the environment (prefix TRADELANE_)."""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.limits import Startups, descriptor_limit

GIB = 1024**3
KIB = 1024
# SMTP's ports by TLS mode (the invitation e-mail's settings and the email endpoint's).
SMTP_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
BATCH_ALONE = 200  # most files for one run while one worker (or none yet) is online...
BATCH_SHARED = 50  # ...and with more, so that a burst makes runs enough to share among them
# A worker asks Prefect for runs this often; it is also woken at once for each run scheduled on
# its pool (deployments/scheduled_wake.py), so asking is only the fallback.
POLL_SECONDS = 2.0


def _one_line(value: str | None) -> str | None:
    if value is not None and any(c in value for c in "\r\n\x00"):
        raise ValueError("may not contain line breaks")
    return value


def _s3_storage_url(value: str) -> str:
    """`s3://bucket[/prefix]`, checked and written one way (no trailing slash)."""
    parts = urlsplit(value)
    if parts.query or parts.fragment or parts.username or parts.password or parts.port:
        raise ValueError(
            "an s3:// storage URL is s3://bucket/prefix; the endpoint comes from AWS_ENDPOINT_URL_S3 "
            f"or AWS_ENDPOINT_URL and the credentials from the usual AWS_* settings: {value!r}"
        )
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ValueError(f"{bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-'): {value!r}")
    segments = prefix.split("/") if prefix else []
    if any(seg in ("", ".", "..") or "\\" in seg or "\x00" in seg for seg in segments):
        raise ValueError(f"the prefix must be plain folder names separated by '/': {value!r}")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def _resolved(path: Path) -> Path:
    """`path` with `~` expanded and symlinks resolved. Asked many times for every file (the home,
    the mailbox root), each time a `stat` of every part of the path: remembered for the same path,
    user home and (for a relative path) working directory."""
    where = None if path.is_absolute() else os.getcwd()
    return _resolved_for(path, os.environ.get("HOME"), where)


@lru_cache(maxsize=64)
def _resolved_for(path: Path, _user_home: str | None, _cwd: str | None) -> Path:
    return path.expanduser().resolve()


class Settings(BaseSettings):
    """Everything tradelane can be told; defaults run the whole system on one machine."""

    model_config = SettingsConfigDict(env_prefix="TRADELANE_", extra="ignore")

    home: Path = Path(".tradelane")
    host: str = "127.0.0.1"
    api_port: int = 8080
    sftp_port: int = 2222
    ftp_port: int = 2121
    prefect_port: int = 4200
    # The Prefect server's bind address: loopback, whatever `host` says, because its API is the
    # control plane (create runs, read logs). Set it (e.g. 0.0.0.0) only to reach the UI from elsewhere.
    prefect_host: str = "127.0.0.1"
    # The Prefect API's auth string (`user:password`, what its UI's login asks for). Unset: the user's
    # own PREFECT_SERVER_API_AUTH_STRING / PREFECT_API_AUTH_STRING, else one generated into the home.
    prefect_auth: str | None = None
    database_url: str | None = None
    secret_key: str | None = None
    # Where mailbox storage, the archive and staging live: a folder (a path or file:// URL), or
    # s3://bucket/prefix (core/storage.py). Unset: `<home>/mailboxes`. Roles on their own
    # (`tradelane serve ...`) share it, so each must be told.
    storage_url: str | None = None

    # Largest file a partner may upload, in bytes (REST answers 413 past it).
    max_upload_bytes: int = 10 * GIB
    token_ttl_seconds: int = 3600
    # Logins (core/login.py). A source address with this many failed logins within the window is
    # refused every login for the cool-down, whatever user it tries (a ban, as SFTPGo's defender).
    lockout_failures: int = 5
    lockout_window_seconds: float = 300.0
    lockout_cooldown_seconds: float = 300.0
    # An account is locked only on distributed evidence: this many failed logins for it within the
    # window, from at least this many distinct addresses (IPv6 counted per /64), locks it this long.
    lockout_account_failures: int = 10
    lockout_account_addresses: int = 3
    lockout_account_seconds: float = 900.0
    # Password checks (argon2: 64 MiB and ~50 ms each) at once in a process, every door together;
    # one more waits at most this long for a free one (in a short queue), else the login is refused
    # as busy, uncounted (core/login.py).
    login_max_concurrent_checks: PositiveInt = 4
    login_check_wait_seconds: NonNegativeFloat = 2.0
    # How often the mailbox servers look for sessions to end (partner removed, disabled, locked, ...).
    session_check_seconds: float = 1.0
    # Partner passwords: at least this long, not containing the partner's name, not a common one.
    password_min_length: int = 12
    # Mailbox servers: sessions per partner (unless the partner sets its own), idle timeout.
    max_connections_per_partner: int = 10
    idle_timeout_seconds: float = 600.0
    # Mailbox servers (SFTP and FTP, each): connections in all and from one address, logged in or not
    # (0: no cap), and how long a connection may take to log in (OpenSSH's LoginGraceTime).
    mailbox_max_connections: NonNegativeInt = 500
    mailbox_max_connections_per_address: NonNegativeInt = 30
    login_grace_seconds: PositiveFloat = 120.0
    # SFTP: connections not logged in yet, OpenSSH's MaxStartups ("start:rate:full" or "N"), and from
    # one address (OpenSSH's PerSourceMaxStartups; below `start`, so one address cannot make others
    # be refused at random; 0: no cap).
    sftp_max_startups: str = "10:30:100"
    sftp_max_startups_per_address: NonNegativeInt = 5
    # The folder holding the SFTP server's host keys (ssh_host_ed25519_key, ssh_host_rsa_key; made
    # there if missing). Unset: the home. Mailbox servers on several machines present the same keys.
    sftp_host_key_dir: Path | None = None
    # SFTP handles open at once in one SFTP session (channel).
    sftp_max_handles_per_session: PositiveInt = 64
    # Files a partner holds open at once over SFTP and FTP, all sessions together; and for every
    # partner together (0: half the process's open-file limit, `ulimit -n`).
    max_open_files_per_partner: PositiveInt = 256
    mailbox_max_open_files: NonNegativeInt = 0
    # REST API (uvicorn): bytes of request line + headers (431 past it); seconds to send them (408);
    # seconds a request body may stall; seconds an idle keep-alive connection is kept; connections
    # in all (503 past it) and from one address (503; 0: no cap, e.g. behind a reverse proxy).
    api_max_header_bytes: int = Field(default=16 * KIB, ge=1024)
    api_header_timeout_seconds: PositiveFloat = 20.0
    api_body_timeout_seconds: PositiveFloat = 60.0
    api_keepalive_timeout_seconds: PositiveFloat = 5.0
    api_max_connections: NonNegativeInt = 1000
    api_max_connections_per_address: NonNegativeInt = 64
    # FTP/FTPS: refuse plain-text logins (plain FTP is an explicit opt-in); passive data ports;
    # certificate (self-signed if unset).
    ftp_require_tls: bool = True
    ftp_passive_ports: str = "30000-30100"
    # The IPv4 address passive replies name (behind NAT or in a container, where the server's own
    # address is not the one clients reach). Unset: the address the client connected to.
    ftp_passive_address: str | None = None
    # The certificate every TLS door presents (FTPS, and the API port with api_tls): core/tls.py.
    # Unset: a self-signed pair generated once into the home.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Serve the API port (REST API, docs, web pages, AS2) over HTTPS with that certificate.
    api_tls: bool = False
    # Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For and
    # X-Forwarded-Proto are believed. Empty: none, from anyone (127.0.0.1 included).
    forwarded_allow_ips: str = ""
    # Portal and console logins (core/web_sessions.py): a session unused this long ends, and every
    # session ends this long after its login, used or not.
    web_session_idle_seconds: PositiveFloat = 1800.0
    web_session_max_seconds: PositiveFloat = 43200.0
    # The portal's uploads: bytes per request the browser sends (tus PATCH); 0: each file in one.
    portal_chunk_bytes: NonNegativeInt = 0
    # The folders account users (admin API, console) may put `file` endpoints in, os.pathsep-separated;
    # `{account}` stands for the account's name. Empty: <home>/files/<account>. The host's CLI may
    # use any folder (core/endpoints/file_roots.py).
    file_endpoint_roots: str = ""
    # `off`: no `tradelane.file.*` events are emitted (flows/events.py), so notification rules and
    # partner notices never fire; for an instance that uses neither, and for bench/events_cost.py.
    events: Literal["on", "off"] = "on"
    # How many pending transfers of one data flow go into one Prefect flow run, at most. A batch is
    # this large only under a backlog (it grows while the data flow's last run waits to start).
    # Larger costs less CPU per file (runs of up to 200: 35 ms a file against 55-59 at 50,
    # bench/burst_cpu.py) but makes fewer runs to share among workers: at 200 a burst of 500 went
    # to one of two workers (tests/roles/test_topology.py). Unset: 200 while at most one worker
    # is online on the pool (`up` alone: nothing to share), 50 with more (see `batch_size`).
    dispatch_batch_size: PositiveInt | None = None
    # Keep delivered files in upload/ (default: a file leaves once every data flow delivered it).
    keep_delivered_uploads: bool = False
    # How often the dispatcher looks for pending work it was not woken for (CLI replays, crashes).
    sweep_interval_seconds: float = 1.0
    # A destination that says "not now" (a peer instance that is down): its files wait, and are
    # carried again after 30 s, 60 s, 120 s ... at most this long apart (±10 %).
    wait_retry_max_seconds: PositiveFloat = 900.0
    # How often a worker asks Prefect for runs to start (and how many it runs at once, below).
    # Unset: every 2 s (POLL_SECONDS); a worker is also woken at once for each run scheduled on its
    # pool. Each ask costs the Prefect server ~30 ms of CPU: at 0.5 s that was half of what an idle
    # `up` spent.
    runner_poll_seconds: PositiveFloat | None = None
    # More concurrent runs only contend for the embedded Prefect server's SQLite writer lock.
    runner_limit: PositiveInt = 4
    # Fork flow-run processes from a warm fork server (milliseconds) instead of a fresh interpreter
    # (~1 s of CPU each): `tradelane worker`'s way; a plain `prefect worker start` always spawns.
    runner_forkserver: bool = True
    # How often the runner looks for new, changed or removed data flows.
    reconcile_interval_seconds: PositiveFloat = 2.0
    # A flow run whose worker or machine died (its heartbeats stopped) has its files carried again
    # within this many seconds (deployments/dead_runs.py); at least 52 with Prefect's 30-s heartbeat.
    dead_run_seconds: PositiveFloat = 60.0
    # The Prefect work pool (type process) every data flow's deployment is on; workers take its runs.
    work_pool: str = "tradelane"
    # The address others reach this instance at: the base of invitation links
    # (PUBLIC_URL/connect/accept?token=...) and the only Origin the accept page's forms may come from.
    # Unset: http://{host}:{api_port}, https:// with api_tls (a wildcard host as loopback).
    public_url: str | None = None
    # Where people reach the Prefect UI: the base of the run links `tradelane transfers` prints and
    # the console shows (core/links.py). Unset: the UI's local address (prefect_ui_url). Empty: no
    # run links at all (a shared instance whose tenants cannot log in to the instance-wide UI).
    prefect_public_url: str | None = None
    # Cross-instance connections (core/b2b/worker.py): how often each active connection asks the other
    # instance for its state (a revoke there shows here within this, plus the request), and whether
    # peer URLs may be on loopback/private addresses (a shared instance must not post into its own
    # network for a link someone else sent; tests on 127.0.0.1 set it).
    peer_check_seconds: PositiveFloat = 30.0
    peer_allow_private: bool = False
    # The SMTP server invitation e-mails go through (core/b2b/mail.py). Unset host: no e-mail is sent,
    # the inviter is given the link to pass on. Port unset: 587 (starttls), 465 (ssl), 25 (none).
    # With a user set, AUTH is always used, also with tls none (the password then crosses in clear).
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["none", "starttls", "ssl"] = "starttls"
    # The From address; unset: tradelane@<host of public_url>.
    smtp_from: str | None = None
    # A CA file to trust for the SMTP server's certificate (a private CA); unset: the system's.
    smtp_cafile: Path | None = None
    # Partner notices of files waiting in download/ (`partner set --tell-downloads`): at most one
    # e-mail per partner per this window, listing every file delivered in it (a rule's --digest).
    partner_download_digest_seconds: int = Field(default=300, ge=5, le=86_400)

    @field_validator("smtp_host", "smtp_user", "smtp_from")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        value = _one_line(value)
        return (value.strip() or None) if value is not None else None

    @field_validator("smtp_from")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            local, at, domain = value.rpartition("@")
            if not at or not local or not domain or " " in value or "<" in value:
                raise ValueError(f"not an e-mail address: {value!r}")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"must have no query, fragment or credentials: {value!r}")
        _ = parts.port  # ValueError for a port that is not a number in range
        return value

    @field_validator("prefect_public_url")
    @classmethod
    def _prefect_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return value if value is None else ""  # "": links hidden, on purpose
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL (or empty: no links), not {value!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"must have no query, fragment or credentials: {value!r}")
        _ = parts.port  # ValueError for a port that is not a number in range
        return value

    @field_validator("file_endpoint_roots")
    @classmethod
    def _roots(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(os.pathsep)):
            if part and not Path(part).expanduser().is_absolute():
                raise ValueError(f"each folder must be absolute (separated by {os.pathsep!r}), not {part!r}")
        return value

    @field_validator("ftp_passive_address")
    @classmethod
    def _passive_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            raise ValueError(f"must be an IP address (PASV names one), not {value!r}") from None
        if address.version != 4:
            raise ValueError(f"must be an IPv4 address (PASV can name no other), not {value!r}")
        return str(address)

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme == "s3":
            return _s3_storage_url(value)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
                raise ValueError(f"a file:// URL names a local folder, e.g. file:///srv/tradelane: {value!r}")
            value = unquote(parts.path)
        elif parts.scheme and len(parts.scheme) > 1:  # "C:" is no scheme, but tradelane runs on POSIX
            raise ValueError(
                f"must be a local folder (a path or file:// URL) or s3://bucket/prefix, not {parts.scheme}://"
            )
        if not Path(value).expanduser().is_absolute():
            raise ValueError(f"must be an absolute path (every role must find the same folder): {value!r}")
        return str(Path(value).expanduser())

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            if item == "*":
                raise ValueError("'*' would let any client choose its address; name your proxies")
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                example = "e.g. 10.0.0.5, 10.0.0.0/24"
                raise ValueError(f"{item!r} is not an IP address or network ({example})") from None
        return ",".join(items)

    @field_validator("sftp_max_startups")
    @classmethod
    def _startups(cls, value: str) -> str:
        return str(Startups.parse(value))

    @property
    def startups(self) -> Startups:
        return Startups.parse(self.sftp_max_startups)

    @property
    def open_file_budget(self) -> int:
        """Files every partner together may hold open: the setting, or half the process's limit."""
        return self.mailbox_max_open_files or max(1, descriptor_limit() // 2)

    def batch_size(self, online_workers: int | None) -> int:
        """Most files for one run (`dispatch_batch_size`); unset, by how many workers are online on
        the pool (None: not known)."""
        if self.dispatch_batch_size is not None:
            return self.dispatch_batch_size
        alone = online_workers is not None and online_workers <= 1
        return BATCH_ALONE if alone else BATCH_SHARED

    def poll_seconds(self) -> float:
        """How often a worker asks Prefect for runs (`runner_poll_seconds`, else POLL_SECONDS)."""
        return POLL_SECONDS if self.runner_poll_seconds is None else self.runner_poll_seconds

    @property
    def home_dir(self) -> Path:
        return _resolved(self.home)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'tradelane.db'}"

    @property
    def storage_bucket(self) -> str | None:
        """The bucket of an `s3://` storage (core/storage.py); None for a local folder."""
        if self.storage_url and self.storage_url.startswith("s3://"):
            return urlsplit(self.storage_url).netloc
        return None

    @property
    def storage_prefix(self) -> str:
        """The key prefix under the bucket of an `s3://` storage ("" for the whole bucket)."""
        if self.storage_bucket is None:
            return ""
        return urlsplit(self.storage_url or "").path.strip("/")

    @property
    def mailbox_root(self) -> Path:
        """The local folder of the storage. With `s3://` storage, what is not in the bucket yet
        (see the README's "Storage on S3") stays in this role's own `<home>/mailboxes`."""
        if self.storage_url and self.storage_bucket is None:
            return _resolved(Path(self.storage_url))
        return self.home_dir / "mailboxes"

    @property
    def public_base_url(self) -> str:
        """Where others reach this instance (no trailing slash): the setting, or the API's address."""
        if self.public_url:
            return self.public_url
        # A wildcard bind is reached on loopback (as prefect_ui_url); others need PUBLIC_URL set.
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return f"{self.api_scheme}://{host}:{self.api_port}"

    @property
    def api_scheme(self) -> str:
        return "https" if self.api_tls else "http"

    @property
    def public_origin(self) -> str:
        """The public URL's origin (scheme://host[:port]), what a browser sends as `Origin`."""
        parts = urlsplit(self.public_base_url)
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        default_port = {"http": 80, "https": 443}[parts.scheme]
        port = f":{parts.port}" if parts.port not in (None, default_port) else ""
        return f"{parts.scheme}://{host}{port}"

    @property
    def smtp_port_or_default(self) -> int:
        return self.smtp_port or SMTP_DEFAULT_PORTS[self.smtp_tls]

    @property
    def smtp_from_address(self) -> str:
        if self.smtp_from:
            return self.smtp_from
        host = urlsplit(self.public_base_url).hostname or "localhost"
        try:  # an address literal, as RFC 5321 writes one: tradelane@[192.0.2.1]
            ip = ipaddress.ip_address(host)
            host = f"[{ip}]" if ip.version == 4 else f"[IPv6:{ip}]"
        except ValueError:
            pass
        return f"tradelane@{host}"

    @property
    def prefect_links_url(self) -> str | None:
        """The base of Prefect UI links shown to people: PREFECT_PUBLIC_URL, else the UI's local
        address; None when the setting is empty (links hidden)."""
        if self.prefect_public_url is None:
            return self.prefect_ui_url
        return self.prefect_public_url or None

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_ui_url}/api"

    @property
    def prefect_ui_url(self) -> str:
        """Where this machine reaches the Prefect server: a wildcard bind is reached on loopback."""
        wildcards = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}
        host = wildcards.get(self.prefect_host, self.prefect_host)
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.prefect_port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
