"""core.netpolicy: which URLs may be fetched when someone else chose them (the SSRF guard)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from core.netpolicy import (
    HostNotResolved,
    UrlNotAllowed,
    check_public_url,
    guarded_transport,
    is_public_address,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "10.1.2.3", "172.16.0.1", "192.168.1.1",
        "169.254.169.254", "fe80::1", "fc00::1", "100.64.0.1", "224.0.0.1", "239.255.255.250",
        "ff02::1", "255.255.255.255", "240.0.0.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
        "64:ff9b::a00:1", "2002:7f00:1::",
    ],
)  # fmt: skip
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(address)
    with pytest.raises(UrlNotAllowed, match="not public"):
        check_public_url(f"http://{'[' + address + ']' if ':' in address else address}:8080/x")


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert is_public_address(address)
    check_public_url(f"https://{'[' + address + ']' if ':' in address else address}/mdn")


def test_a_name_is_judged_by_what_it_resolves_to() -> None:
    with pytest.raises(UrlNotAllowed, match=r"'localhost' is at (127\.0\.0\.1|::1), a loopback"):
        check_public_url("http://localhost:9/internal-admin")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost", "gopher://h/"]
)
def test_only_http_and_https_with_a_host(url: str) -> None:
    with pytest.raises(UrlNotAllowed, match="only http"):
        check_public_url(url, allow_private=True)


def test_an_unresolvable_name_is_its_own_error() -> None:
    with pytest.raises(HostNotResolved):
        check_public_url("http://no-such-host.invalid/")


def test_allow_private_skips_the_address_rule() -> None:
    check_public_url("http://127.0.0.1:9/x", allow_private=True)
    check_public_url("http://localhost:9/x", allow_private=True)


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"localhost:{server.server_address[1]}", paths
    server.shutdown()
    server.server_close()


def test_the_guarded_transport_checks_the_address_it_connects_to(listener: tuple[str, list[str]]) -> None:
    """The check made when connecting (what defeats DNS rebinding): no request reaches 127.0.0.1."""
    host, paths = listener
    with (
        httpx.Client(transport=guarded_transport()) as client,
        pytest.raises(httpx.ConnectError, match="loopback"),
    ):
        client.get(f"http://{host}/internal-admin")
    assert paths == []
    with httpx.Client(transport=guarded_transport(allow_private=True)) as client:
        assert client.get(f"http://{host}/allowed").text == "ok"
    assert paths == ["/allowed"]


def test_the_guarded_transport_takes_no_proxy() -> None:
    with pytest.raises(ValueError, match="proxy"):
        guarded_transport(proxy="http://127.0.0.1:3128")
