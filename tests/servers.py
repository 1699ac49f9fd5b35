"""Real servers the integration tests talk to, started once per session as child processes."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

__all__ = [
    "MotoAuth",
    "free_port",
    "moto_auth_server",
    "moto_client",
    "moto_server",
    "require_tool",
    "run_moto_server",
    "tcp_forwarder",
]

# Moto's auth server lets this many requests through unauthenticated before it starts checking
# keys: exactly enough for `seed_moto_auth` to create an IAM user, its key and one bucket.
MOTO_AUTH_FREE_REQUESTS = 3


def moto_client(url: str) -> Any:
    """A plain boto3 S3 client for moto at `url` (which takes any key), to arrange and inspect."""
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )


def require_tool(command: str) -> str:
    """The path of a program the tests drive, or a failure that says how to get it: `make test`
    installs every one (scripts/install-test-servers.sh), so a missing one is a broken set-up,
    never a reason to skip."""
    import shutil

    path = shutil.which(command) or (
        command if os.path.isabs(command) and os.access(command, os.X_OK) else None
    )
    if path is None:
        pytest.fail(f"{command} is not installed: run scripts/install-test-servers.sh (make test does)")
    return path


LOWEST_SERVER_PORT = 20000  # above the usual fixed ports (Azurite 10000-10002 and the like)


def _lowest_client_port() -> int:
    """The bottom of the range the kernel takes the local ports of outgoing connections from."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port nothing listens on right now, for a server started a little later (`up` binds its
    mailbox ports some 20 s after they are chosen). Never one the kernel could give an outgoing
    connection meanwhile: the session's clients make thousands, and one of them once took the FTP
    port of an `up` still starting. So it is drawn below that range; another test's server may
    still take it first, a race as tiny as two random draws meeting."""
    low = _lowest_client_port()
    if low - LOWEST_SERVER_PORT < 1000:  # an unusual range: fall back to the kernel's choice
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            chosen: int = sock.getsockname()[1]
            return chosen
    for _ in range(100):
        port = random.randrange(LOWEST_SERVER_PORT, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port between {LOWEST_SERVER_PORT} and {low}")


def wait_until_listening(
    name: str, port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0
) -> None:
    """Wait until `proc` (the server `name`, its output in `log`) accepts TCP connections on
    127.0.0.1:`port`; fail with its output if it exits first, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout}s")


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not answer within {timeout}s")


@contextmanager
def run_moto_server(env: dict[str, str] | None = None, *, port: int | None = None) -> Iterator[str]:
    """Run `python -m moto.server` from this interpreter's environment; yields its base URL.

    `port` lets a test point an endpoint at a server that is not up yet, then start it.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="moto-") as tmp:
        log = Path(tmp) / "moto.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
            try:
                _wait_until_up(f"{url}/moto-api/", proc, log)
                yield url
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server (S3 and friends over real HTTP) that accepts any credentials."""
    with run_moto_server() as url:
        yield url


@dataclass(frozen=True)
class MotoAuth:
    """A credential-checking moto server, seeded with one IAM user (no policies) and one bucket."""

    url: str
    bucket: str
    access_key_id: str
    secret_access_key: str


@pytest.fixture(scope="session")
def moto_auth_server() -> Iterator[MotoAuth]:
    """A moto server that checks keys and signatures (moto's IAM mode), already seeded."""
    with run_moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": str(MOTO_AUTH_FREE_REQUESTS)}) as url:
        # Exactly MOTO_AUTH_FREE_REQUESTS requests; every later one must be signed by a known key.
        anyone = {"endpoint_url": url, "region_name": "us-east-1"}
        anyone |= {"aws_access_key_id": "seed", "aws_secret_access_key": "seed"}
        iam = boto3.client("iam", **anyone)
        iam.create_user(UserName="tradelane-test")
        key = iam.create_access_key(UserName="tradelane-test")["AccessKey"]
        boto3.client("s3", **anyone).create_bucket(Bucket="tradelane-auth")
        yield MotoAuth(url, "tradelane-auth", key["AccessKeyId"], key["SecretAccessKey"])


@contextmanager
def tcp_forwarder(listen_port: int, target_port: int) -> Iterator[None]:
    """Forward 127.0.0.1:listen_port to target_port while the block runs: a server that "comes back"."""
    import selectors
    import threading

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(64)
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        server.close()
