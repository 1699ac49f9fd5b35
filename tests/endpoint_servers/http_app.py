"""A small, real HTTP file service for the http endpoint's tests (stdlib ThreadingHTTPServer).

Routes (all under one base URL; bodies stream to and from disk in bounded chunks):

    PUT|POST /files/<path>      store the body (raw, chunked or multipart/form-data) at <path>
    POST     /files             store it under the name from Content-Disposition / the form part
    GET|HEAD /files/<path>      the file, with Content-Length, Last-Modified and ETag
    DELETE   /files/<path>      204, or 404
    GET      /files?prefix=P    JSON {"files": [{"name", "size", "modified", "etag"[, "url"]}]}
    GET      /download/<path>   same as GET /files/<path> (for listings that carry a "url")
    GET      /redirect/<path>   302 to /files/<path> on the same origin
    GET      /redirect-away/<path>  302 to the same file on http://localhost:<port> (another origin)
    GET|HEAD /redirect-to?location=URL  302 to any URL (a hostile server's redirect)
    PUT|POST /echo[/<path>]     store the body as /files does, and answer with the request echoed
                                (method, target with its query string, every header), as some
                                APIs do; `?status=N` answers N (with the echo) and stores nothing

An upload lands in a spool directory first and is renamed into place only when the whole body
arrived, so readers never see a partial file. Knobs for failure tests: `auth` (bearer or basic,
with read-only credentials answering 403 on writes), `fail_next(n, status)`, `upload_status`,
`head_allowed`, `list_format`, `list_urls`, `echo_auth` (error bodies quote the Authorization
header), `delay`, `stop()`/`start()` (down and back on the same port) and TLS with a throwaway CA.
`auth = "key"` wants an API key twice, as some APIs do: an `X-Api-Key` header from `api_keys`
and a `key` query parameter from `query_keys`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from python_multipart.multipart import MultipartParser, parse_options_header

from tests.servers import free_port

__all__ = ["HttpApp", "http_app", "https_app", "run_http_app"]

BUF = 256 * 1024


class IncompleteBody(Exception):
    """The client went away before the whole request body arrived."""


@dataclass
class Seen:
    """One request as the app saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body_size: int = 0


@dataclass
class HttpApp:
    """The running app and its knobs; `reset()` restores the defaults between tests."""

    root: Path
    spool: Path
    port: int
    tls: ssl.SSLContext | None = None
    ca_file: Path | None = None
    auth: str | None = "bearer"  # "bearer", "basic", "key" or None
    tokens: dict[str, str] = field(default_factory=dict)  # bearer token -> "rw" | "ro"
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # user -> (password, "rw" | "ro")
    api_keys: set[str] = field(default_factory=set)  # X-Api-Key values (auth "key")
    query_keys: set[str] = field(default_factory=set)  # ?key= values (auth "key")
    upload_status: int = 201
    head_allowed: bool = True
    list_format: str = "object"  # "object" ({"files": [...]}) or "list"
    list_urls: bool = False
    echo_auth: bool = False
    delay: float = 0.0  # seconds to wait before answering (for timeouts)
    write_delay: float = 0.0  # seconds each upload (PUT/POST) takes before it is answered
    writes_at_once: int = 0  # uploads being answered now
    most_writes_at_once: int = 0  # the most seen since `reset()`
    read_delay: float = 0.0  # the same for downloads (GET /files/<path>)
    reads_at_once: int = 0
    most_reads_at_once: int = 0
    file_field: str = "file"
    requests: list[Seen] = field(default_factory=list)
    _failures: list[tuple[int, int]] = field(default_factory=list)  # (remaining, status)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _connections: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def reset(self) -> None:
        for child in self.root.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.auth = "bearer"
        self.tokens = {"test-token-rw": "rw", "test-token-ro": "ro"}
        self.users = {"acme": ("basic-secret-pw", "rw")}
        self.api_keys = set()
        self.query_keys = set()
        self.upload_status = 201
        self.head_allowed = True
        self.list_format = "object"
        self.list_urls = False
        self.echo_auth = False
        self.delay = 0.0
        self.write_delay = 0.0
        self.writes_at_once = self.most_writes_at_once = 0
        self.read_delay = 0.0
        self.reads_at_once = self.most_reads_at_once = 0
        self.file_field = "file"
        self.requests.clear()
        self._failures.clear()
        if self._server is None:
            self.start()

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (and Retry-After: 1)."""
        with self._lock:
            self._failures.append((count, status))

    def take_failure(self) -> int | None:
        with self._lock:
            if not self._failures:
                return None
            remaining, status = self._failures[0]
            if remaining <= 1:
                self._failures.pop(0)
            else:
                self._failures[0] = (remaining - 1, status)
            return status

    def spool_files(self) -> list[Path]:
        return list(self.spool.iterdir())

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        server = _QuietServer(("127.0.0.1", self.port), _handler_for(self), bind_and_activate=False)
        server.allow_reuse_address = True
        server.daemon_threads = True
        server.server_bind()
        server.server_activate()
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="http-app", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Go down: stop listening and cut every open connection (keep-alive ones too)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- auth --------------------------------------------------------------------------------

    def access(self, authorization: str | None, api_key: str | None = None, query: str = "") -> str | None:
        """'rw', 'ro', or None when the credentials are missing or wrong."""
        if self.auth is None:
            return "rw"
        if self.auth == "key":
            keys = parse_qs(query).get("key", [])
            return "rw" if api_key in self.api_keys and keys and keys[0] in self.query_keys else None
        if not authorization:
            return None
        kind, _, value = authorization.partition(" ")
        if self.auth == "bearer" and kind.lower() == "bearer":
            return self.tokens.get(value.strip())
        if self.auth == "basic" and kind.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            known = self.users.get(user)
            return known[1] if known and known[0] == password else None
        return None


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-answer (an early-closed read, a stopped test) are not errors."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)


def _safe_rel(raw: str) -> str | None:
    parts = raw.split("/")
    if not raw or raw.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in raw:
        return None
    return raw


def _handler_for(app: HttpApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tradelane-test-app/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with app._lock:
                app._connections.add(self.connection)

        def finish(self) -> None:
            with app._lock:
                app._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        # --- plumbing ------------------------------------------------------------------------

        def body_chunks(self) -> Iterator[bytes]:
            """The request body as it arrives: Content-Length or chunked; raises IncompleteBody."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                while True:
                    line = self.rfile.readline(1024)
                    if not line:
                        raise IncompleteBody
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass
                        return
                    left = size
                    while left:
                        data = self.rfile.read(min(left, BUF))
                        if not data:
                            raise IncompleteBody
                        left -= len(data)
                        yield data
                    self.rfile.readline(1024)
            else:
                left = int(self.headers.get("Content-Length") or 0)
                while left:
                    data = self.rfile.read(min(left, BUF))
                    if not data:
                        raise IncompleteBody
                    left -= len(data)
                    yield data

        def drain(self) -> None:
            with contextlib.suppress(IncompleteBody, ValueError, OSError):
                for _ in self.body_chunks():
                    pass

        def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def reply_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(data).encode()
            self.reply(status, body, {"Content-Type": "application/json", **(headers or {})})

        def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            self.drain()  # read the body first, so the client sees our answer, not a broken pipe
            data: dict[str, Any] = {"error": message}
            if app.echo_auth:
                data["authorization"] = self.headers.get("Authorization", "")
            self.reply_json(status, data, headers)

        # --- dispatch ------------------------------------------------------------------------

        def do_GET(self) -> None:
            self.dispatch()

        def do_HEAD(self) -> None:
            self.dispatch()

        def do_PUT(self) -> None:
            self.dispatch()

        def do_POST(self) -> None:
            self.dispatch()

        def do_DELETE(self) -> None:
            self.dispatch()

        def dispatch(self) -> None:
            path = urlsplit(self.path).path
            kind = "writes" if self.command in ("PUT", "POST") else None
            if self.command == "GET" and path.startswith("/files/") and path != "/files/":
                kind = "reads"
            if kind is None:
                self.answer()
                return
            # Uploads and downloads at once, as a server with a connection limit counts them.
            with app._lock:
                now = getattr(app, f"{kind}_at_once") + 1
                setattr(app, f"{kind}_at_once", now)
                setattr(app, f"most_{kind}_at_once", max(getattr(app, f"most_{kind}_at_once"), now))
            try:
                delay = app.write_delay if kind == "writes" else app.read_delay
                if delay:
                    time.sleep(delay)
                self.answer()
            finally:
                with app._lock:
                    setattr(app, f"{kind}_at_once", getattr(app, f"{kind}_at_once") - 1)

        def answer(self) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            app.requests.append(Seen(self.command, self.path, headers))
            if app.delay:
                time.sleep(app.delay)
            access = app.access(self.headers.get("Authorization"), self.headers.get("X-Api-Key"), parts.query)
            if access is None:
                self.error(401, "authentication required", {"WWW-Authenticate": 'Bearer realm="files"'})
                return
            if (status := app.take_failure()) is not None:
                self.error(status, "temporarily unavailable", {"Retry-After": "1"})
                return
            writes = self.command in ("PUT", "POST", "DELETE")
            if writes and access != "rw":
                self.error(403, "read-only credentials")
                return
            if path == "/redirect-to":
                location = parse_qs(parts.query).get("location", [""])[0]
                self.reply(302, b"", {"Location": location})
                return
            if path in ("/echo", "/echo/") or path.startswith("/echo/"):
                rel = _safe_rel(path[len("/echo/") :]) if len(path) > len("/echo/") else None
                self.echo(rel, parts.query)
                return
            if path in ("/files", "/files/"):
                if self.command == "GET":
                    self.listing(parse_qs(parts.query).get("prefix", [""])[0])
                elif self.command == "POST":
                    self.upload(None)
                else:
                    self.error(405, "method not allowed")
                return
            for route in ("/files/", "/download/", "/redirect/", "/redirect-away/"):
                if path.startswith(route):
                    rel = _safe_rel(path[len(route) :])
                    if rel is None:
                        self.error(400, "bad path")
                        return
                    self.file_route(route, rel)
                    return
            self.error(404, "no such route")

        def file_route(self, route: str, rel: str) -> None:
            if route == "/redirect/":
                self.reply(302, b"", {"Location": f"/files/{quote(rel)}"})
            elif route == "/redirect-away/":
                self.reply(302, b"", {"Location": f"http://localhost:{app.port}/files/{quote(rel)}"})
            elif self.command in ("GET", "HEAD"):
                if self.command == "HEAD" and not app.head_allowed:
                    self.error(405, "HEAD not allowed")
                else:
                    self.send_file(rel)
            elif self.command in ("PUT", "POST") and route == "/files/":
                self.upload(rel)
            elif self.command == "DELETE" and route == "/files/":
                target = app.root / rel
                if target.is_file():
                    target.unlink()
                    self.reply(204)
                else:
                    self.error(404, "no such file")
            else:
                self.error(405, "method not allowed")

        # --- files ---------------------------------------------------------------------------

        def file_headers(self, target: Path) -> dict[str, str]:
            st = target.stat()
            return {
                "Content-Type": "application/octet-stream",
                "Last-Modified": formatdate(st.st_mtime, usegmt=True),
                "ETag": f'"{st.st_size:x}-{st.st_mtime_ns:x}"',
            }

        def send_file(self, rel: str) -> None:
            target = app.root / rel
            if not target.is_file():
                self.error(404, "no such file")
                return
            with target.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                self.send_response(200)
                for name, value in self.file_headers(target).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if self.command == "GET":
                    while data := handle.read(BUF):
                        self.wfile.write(data)

        def listing(self, prefix: str) -> None:
            files = []
            for target in sorted(app.root.rglob("*")):
                rel = target.relative_to(app.root).as_posix()
                if target.is_file() and rel.startswith(prefix):
                    st = target.stat()
                    item = {
                        "name": rel,
                        "size": st.st_size,
                        "modified": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat(),
                        "etag": f"{st.st_size:x}-{st.st_mtime_ns:x}",
                    }
                    if app.list_urls:
                        item["url"] = f"/download/{quote(rel)}"
                    files.append(item)
            self.reply_json(200, files if app.list_format == "list" else {"files": files})

        def echo(self, rel: str | None, query: str) -> None:
            """Store the upload like /files, and answer with the request it got (APIs that echo)."""
            request = {"method": self.command, "target": self.path, "headers": dict(self.headers.items())}
            wanted = parse_qs(query).get("status", [""])[0]
            if self.command not in ("PUT", "POST"):
                self.error(405, "method not allowed")
            elif wanted.isdigit():
                self.drain()
                self.reply_json(int(wanted), {"error": "as asked", "request": request})
            else:
                self.upload(rel, echo=request)

        def upload(self, rel: str | None, echo: dict[str, Any] | None = None) -> None:
            ctype, params = parse_options_header(self.headers.get("Content-Type", ""))
            fd, temp_name = tempfile.mkstemp(dir=app.spool, prefix="upload-")
            temp = Path(temp_name)
            digest = hashlib.sha256()
            try:
                with os.fdopen(fd, "wb") as out:
                    if ctype == b"multipart/form-data":
                        name = self.receive_multipart(params.get(b"boundary", b""), out, digest)
                    else:
                        name = _disposition_name(self.headers.get("Content-Disposition", ""))
                        for chunk in self.body_chunks():
                            out.write(chunk)
                            digest.update(chunk)
                    size = out.tell()
                target_rel = rel or (name and _safe_rel(os.path.basename(name)))
                if not target_rel:
                    temp.unlink()
                    self.error(400, "no file name")
                    return
                target = app.root / target_rel
                if target.is_dir():
                    temp.unlink()
                    self.error(409, "a folder has that name")
                    return
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp, target)
            except (IncompleteBody, ValueError, OSError):
                temp.unlink(missing_ok=True)
                self.close_connection = True
                return
            app.requests[-1].body_size = size
            headers = {"Location": f"/files/{quote(target_rel)}", "X-Request-Id": uuid.uuid4().hex}
            if app.upload_status == 204:
                self.reply(204, b"", headers)
            else:
                result: dict[str, Any] = {"name": target_rel, "size": size, "sha256": digest.hexdigest()}
                if echo is not None:
                    result["request"] = echo
                self.reply_json(app.upload_status, result, headers)

        def receive_multipart(self, boundary: bytes, out: Any, digest: Any) -> str | None:
            """Stream the form part named `app.file_field` into `out`; returns its file name."""
            state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "mine": False, "name": None}

            def on_part_begin() -> None:
                state["headers"] = {}

            def on_header_field(data: bytes, start: int, end: int) -> None:
                state["field"] += data[start:end]

            def on_header_value(data: bytes, start: int, end: int) -> None:
                state["value"] += data[start:end]

            def on_header_end() -> None:
                state["headers"][state["field"].decode().lower()] = state["value"].decode()
                state["field"], state["value"] = b"", b""

            def on_headers_finished() -> None:
                _, options = parse_options_header(state["headers"].get("content-disposition", ""))
                state["mine"] = options.get(b"name", b"").decode() == app.file_field
                if state["mine"]:
                    state["name"] = options.get(b"filename", b"").decode() or None

            def on_part_data(data: bytes, start: int, end: int) -> None:
                if state["mine"]:
                    out.write(data[start:end])
                    digest.update(data[start:end])

            parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": on_part_begin,
                    "on_header_field": on_header_field,
                    "on_header_value": on_header_value,
                    "on_header_end": on_header_end,
                    "on_headers_finished": on_headers_finished,
                    "on_part_data": on_part_data,
                },
            )
            for chunk in self.body_chunks():
                parser.write(chunk)
            parser.finalize()
            name: str | None = state["name"]
            return name

    return Handler


def _disposition_name(header: str) -> str | None:
    """The file name from Content-Disposition, preferring RFC 6266's `filename*` (UTF-8)."""
    if star := re.search(r"filename\*\s*=\s*([^;\s]+)", header, re.IGNORECASE):
        charset, _, encoded = star.group(1).strip('"').partition("''")
        return unquote(encoded, encoding=charset or "utf-8")
    message = Message()
    message["Content-Disposition"] = header
    return message.get_filename()


# --- TLS ---------------------------------------------------------------------------------------


def make_tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it; returns (server ctx, CA file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tradelane test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, ca_file


@contextlib.contextmanager
def run_http_app(*, tls: bool = False) -> Iterator[HttpApp]:
    with tempfile.TemporaryDirectory(prefix="http-app-") as tmp:
        base = Path(tmp)
        (base / "files").mkdir()
        (base / "spool").mkdir()
        context, ca_file = make_tls(base) if tls else (None, None)
        app = HttpApp(
            root=base / "files", spool=base / "spool", port=free_port(), tls=context, ca_file=ca_file
        )
        app.reset()
        try:
            yield app
        finally:
            app.stop()


@pytest.fixture(scope="session")
def http_app() -> Iterator[HttpApp]:
    """The file service over plain HTTP, once per session; tests call `reset()` first."""
    with run_http_app() as app:
        yield app


@pytest.fixture(scope="session")
def https_app() -> Iterator[HttpApp]:
    """The same service over HTTPS with a certificate from a throwaway CA (`app.ca_file`)."""
    with run_http_app(tls=True) as app:
        yield app
