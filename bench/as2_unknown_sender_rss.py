"""AS2: memory of the API process while a big body from an unknown sender is refused.

    .venv/bin/python -m bench.as2_unknown_sender_rss [--mib 30]

A fresh TRADELANE_HOME with one AS2 identity (so `AS2-To` is ours) and no partner profile; the API
runs in its own process (uvicorn with httptools, as `tradelane up` runs it). A client POSTs a
`--mib` MiB body with `AS2-From: STRANGER` to /as2/receive, streaming it in 64 KiB pieces; the
script prints the API's RSS before and its peak RSS (VmHWM) after, the answer, and how much of
the body the client managed to send before the server answered or closed the connection.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.as2_bench import free_port, rss_now_kib, rss_peak_kib
from core.tenancy import scope_for_cli

OURS = "RSS-US"
MIB = 1024 * 1024


def setup() -> None:
    from core import db
    from core.as2 import identity

    db.init_db()
    key, cert = identity.self_signed(OURS)
    with db.session_scope() as session:
        identity.create(session, scope_for_cli(session, "home"), OURS, key, cert)


def post_unknown(port: int, size: int) -> tuple[str, int]:
    """POST `size` bytes from an unknown AS2-From over a raw socket: (status line, bytes sent)."""
    head = (
        "POST /as2/receive HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "AS2-Version: 1.2\r\n"
        "AS2-From: STRANGER\r\n"
        f"AS2-To: {OURS}\r\n"
        "Message-ID: <rss-probe@bench>\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    piece = os.urandom(64 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head)
        try:
            while sent < size:
                chunk = piece[: min(len(piece), size - sent)]
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: the rest of the body is never read
        try:
            answer = sock.recv(65536).decode("latin-1")
        except ConnectionResetError:
            answer = "(connection reset)"
    return (answer.split("\r\n", 1)[0] or "(closed without an answer)"), sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=30)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="tradelane-as2-rss-"))
    port = free_port()
    os.environ.update(TRADELANE_HOME=str(home), TRADELANE_API_PORT=str(port))
    os.environ.pop("TRADELANE_DATABASE_URL", None)
    setup()
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "error", "--http", "httptools"],
        env=os.environ.copy(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/as2/receive").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.1)
        post_unknown(port, 1024)  # warm-up: imports and the first database session
        before, peak_before = rss_now_kib(api.pid), rss_peak_kib(api.pid)
        status, sent = post_unknown(port, args.mib * MIB)
        time.sleep(0.5)  # let the server finish whatever it still does with the request
        after, peak_after = rss_now_kib(api.pid), rss_peak_kib(api.pid)
    finally:
        api.terminate()
        api.wait(10)
    print(f"answer: {status}")
    print(f"body sent by the client before the answer/close: {sent / MIB:.1f} of {args.mib} MiB")
    print(
        f"API RSS before {before / 1024:.0f} MiB, after {after / 1024:.0f} MiB "
        f"(+{(after - before) / 1024:.0f} MiB); peak RSS (VmHWM) {peak_before / 1024:.0f} → "
        f"{peak_after / 1024:.0f} MiB (+{(peak_after - peak_before) / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
