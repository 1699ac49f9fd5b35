"""The HTTP API endpoint against a real local HTTP file service: the contract, push modes, the
recorded response, and failures (auth, 503, down, timeouts, DNS, TLS, redirects)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from core.endpoints.base import (
    AuthError,
    ConfigError,
    DnsError,
    Endpoint,
    EndpointError,
    NotFound,
    PermissionDenied,
    TlsError,
    TransientError,
    Unreachable,
    copy_stream,
)
from core.endpoints.http import HttpEndpoint, HttpWriteStream
from core.endpoints.registry import open_endpoint
from tests.endpoint_servers.http_app import HttpApp
from tests.endpoints.contract import MIB, EndpointContract, get, paths, payload_chunks, peak_memory, put
from tests.servers import free_port

TOKEN = "test-token-rw"
READ_ONLY = "test-token-ro"
PASSWORD = "basic-secret-pw"


@pytest.fixture
def app(http_app: HttpApp) -> HttpApp:
    http_app.reset()
    return http_app


def file_api(app: HttpApp, **config: Any) -> dict[str, Any]:
    """Config for the app's file API: PUT to /files/<path>, list /files, GET/DELETE /files/<path>."""
    base = {"url": f"{app.url}/files", "method": "PUT", "path_in_url": True, "list_url": f"{app.url}/files"}
    return base | config


def make_endpoint(app: HttpApp, secrets: dict[str, Any] | None = None, **config: Any) -> HttpEndpoint:
    return HttpEndpoint(file_api(app, **config), {"bearer": TOKEN} if secrets is None else secrets)


def stored(app: HttpApp, rel: str) -> bytes:
    return (app.root / rel).read_bytes()


class TestHttpEndpoint(EndpointContract):
    secret_values = (TOKEN,)

    @pytest.fixture
    def endpoint(self, app: HttpApp) -> Iterator[Endpoint]:
        with make_endpoint(app) as endpoint:
            yield endpoint


@pytest.fixture
def endpoint(app: HttpApp) -> Iterator[HttpEndpoint]:
    with make_endpoint(app) as endpoint:
        yield endpoint


# --- configuration ---------------------------------------------------------------------------


def test_registry_opens_http() -> None:
    assert isinstance(open_endpoint("http", {"url": "https://api.example.com/in"}), HttpEndpoint)


@pytest.mark.parametrize(
    ("config", "secrets"),
    [
        ({}, {}),
        ({"url": "ftp://example.com/x"}, {}),
        ({"url": "https:///no-host"}, {}),
        ({"url": "https://a.example", "method": "PATCH"}, {}),
        ({"url": "https://a.example", "upload_mode": "form"}, {}),
        ({"url": "https://a.example", "success_codes": ["ok"]}, {}),
        ({"url": "https://a.example", "success_codes": [999]}, {}),
        ({"url": "https://a.example", "download_url": "https://a.example/get"}, {}),  # no {path}
        ({"url": "https://a.example", "list_url": "/relative"}, {}),
        ({"url": "https://a.example", "headers": {"X-A": "1\r\nX-Injected: 2"}}, {}),
        ({"url": "https://a.example", "verify": 3}, {}),
        ({"url": "https://a.example"}, {"bearer": "t0ken", "basic_user": "u", "basic_password": "p4ss"}),
        ({"url": "https://a.example"}, {"basic_user": "u"}),
        ({"url": "https://a.example"}, {"headers": "X-Api-Key: k"}),
    ],
)
def test_bad_config(config: dict[str, Any], secrets: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        HttpEndpoint(config, secrets)


def test_uri_hides_credentials_and_query() -> None:
    endpoint = HttpEndpoint(
        {"url": "https://user:pw@api.example.com:8443/in?code=KEY123", "path_in_url": True}
    )
    assert endpoint.uri("po/850 a.json") == "https://api.example.com:8443/in/po/850%20a.json"
    assert endpoint.uri("") == "https://api.example.com:8443/in"
    templated = HttpEndpoint(
        {"url": "https://a.example/up", "download_url": "https://a.example/get/{path}?x=1"}
    )
    assert templated.uri("x/y.txt") == "https://a.example/get/x/y.txt"


def test_missing_list_url_cannot_list(app: HttpApp) -> None:
    with (
        HttpEndpoint({"url": f"{app.url}/files"}, {"bearer": TOKEN}) as endpoint,
        pytest.raises(ConfigError, match="list_url"),
    ):
        list(endpoint.list())


# --- pull one URL ----------------------------------------------------------------------------


def pull_one(app: HttpApp, **config: Any) -> HttpEndpoint:
    return HttpEndpoint(
        {"url": f"{app.url}/files", "pull_url": f"{app.url}/files/exports/daily.csv"} | config,
        {"bearer": TOKEN},
    )


def test_pull_url_offers_the_one_file_with_its_validators(app: HttpApp) -> None:
    (app.root / "exports").mkdir()
    (app.root / "exports" / "daily.csv").write_bytes(b"a,b\n1,2\n")
    with pull_one(app) as endpoint:
        [info] = list(endpoint.list())
        assert (info.path, info.size) == ("daily.csv", 8)
        assert info.etag and info.modified.year >= 2026  # what "keep" remembers it by
        with endpoint.open_read("daily.csv") as stream:
            assert stream.read() == b"a,b\n1,2\n"
        endpoint.delete("daily.csv")
        assert [(r.method, r.path) for r in app.requests][-1] == ("DELETE", "/files/exports/daily.csv")
        assert not (app.root / "exports" / "daily.csv").exists()
        assert list(endpoint.list()) == []  # gone (404): nothing to take, not an error
        endpoint.check()


def test_pull_url_without_head_uses_the_headers_of_a_get(app: HttpApp) -> None:
    (app.root / "exports").mkdir()
    (app.root / "exports" / "daily.csv").write_bytes(b"x" * 5000)
    app.head_allowed = False
    with pull_one(app, pull_name="today.csv") as endpoint:
        [info] = list(endpoint.list())
    assert (info.path, info.size) == ("today.csv", 5000) and info.etag


@pytest.mark.parametrize(
    "config",
    [
        {"list_url": "http://127.0.0.1:1/list"},  # one or the other
        {"pull_url": "http://127.0.0.1:1/"},  # names no file
        {"pull_name": "a/b.csv"},
    ],
)
def test_pull_url_settings_are_checked(app: HttpApp, config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        pull_one(app, **config)


def test_pull_url_has_no_folders(app: HttpApp) -> None:
    with pull_one(app) as endpoint, pytest.raises(ConfigError, match="no folders"):
        list(endpoint.list("out"))


# --- push ------------------------------------------------------------------------------------


def test_raw_post_names_the_file_and_records_the_response(app: HttpApp, opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(
        HttpEndpoint({"url": f"{app.url}/files", "headers": {"X-Partner": "acme"}}, {"bearer": TOKEN})
    )
    data = b"ISA*00*~" * 1000
    with endpoint.open_write("out/850 é.edi") as stream:
        stream.write(data)
    assert stored(app, "850 é.edi") == data  # POST to the URL; the name rides in Content-Disposition
    seen = app.requests[-1]
    assert (seen.method, seen.path) == ("POST", "/files")
    assert seen.headers["content-length"] == str(len(data))  # spooled: a known length, not chunked
    assert "transfer-encoding" not in seen.headers
    assert seen.headers["content-type"] == "application/octet-stream"
    assert seen.headers["x-partner"] == "acme"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert isinstance(stream, HttpWriteStream)
    record = stream.last_response
    assert record is not None and record is endpoint.last_response
    assert record.status == 201
    assert record.method == "POST"
    assert record.url == f"{app.url}/files"
    assert record.headers["location"] == "/files/850%20%C3%A9.edi"
    assert "x-request-id" in record.headers
    assert json.loads(record.body)["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.loads(json.dumps(record.to_dict()))["status"] == 201  # storable as JSON
    assert stream.answer == record.to_dict()  # what the transfer keeps
    assert stream.answer["summary"].startswith("HTTP 201 Created: {")


def test_put_with_path_in_url(app: HttpApp, endpoint: HttpEndpoint) -> None:
    put(endpoint, "a/b c.txt", b"hello")
    assert stored(app, "a/b c.txt") == b"hello"
    assert (app.requests[-1].method, app.requests[-1].path) == ("PUT", "/files/a/b%20c.txt")


@pytest.mark.parametrize("field", ["file", "document"])
def test_multipart_upload(app: HttpApp, field: str, opened: contextlib.ExitStack) -> None:
    app.file_field = field
    endpoint = opened.enter_context(
        HttpEndpoint(
            {
                "url": f"{app.url}/files",
                "upload_mode": "multipart",
                "file_field": field,
                "headers": {"Content-Type": "application/xml"},  # must not clobber the boundary
            },
            {"bearer": TOKEN},
        )
    )
    data = b"".join(payload_chunks(3 * MIB + 11))
    put(endpoint, "orders/po.xml", data)
    assert stored(app, "po.xml") == data
    assert app.requests[-1].headers["content-type"].startswith("multipart/form-data; boundary=")
    assert endpoint.last_response is not None and endpoint.last_response.status == 201


def test_success_codes_are_respected(app: HttpApp, opened: contextlib.ExitStack) -> None:
    app.upload_status = 200
    strict = opened.enter_context(make_endpoint(app, success_codes=[201]))
    with pytest.raises(EndpointError, match=r"HTTP 200.*expected one of 201") as caught:
        put(strict, "x.txt", b"x")
    assert not caught.value.retryable
    assert strict.last_response is not None and strict.last_response.status == 200
    put(opened.enter_context(make_endpoint(app, success_codes=[200])), "y.txt", b"y")
    app.upload_status = 204
    default = opened.enter_context(make_endpoint(app))
    put(default, "z.txt", b"z")
    assert default.last_response is not None
    assert (default.last_response.status, default.last_response.body) == (204, "")


def test_503_is_transient_and_a_retry_delivers(app: HttpApp, endpoint: HttpEndpoint) -> None:
    app.fail_next(1, 503)
    data = b"".join(payload_chunks(2 * MIB))
    with pytest.raises(TransientError, match="HTTP 503") as caught:
        put(endpoint, "retry.bin", data)
    assert caught.value.retryable
    assert "Retry-After: 1" in str(caught.value)
    assert endpoint.last_response is not None and endpoint.last_response.status == 503
    assert not (app.root / "retry.bin").exists()
    put(endpoint, "retry.bin", data)  # what the flow's retry does
    assert stored(app, "retry.bin") == data
    assert endpoint.last_response.status == 201


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
def test_retryable_statuses(app: HttpApp, endpoint: HttpEndpoint, status: int) -> None:
    app.fail_next(1, status)
    with pytest.raises(TransientError):
        put(endpoint, "x.txt", b"x")


def test_abort_sends_nothing(app: HttpApp, endpoint: HttpEndpoint) -> None:
    stream = endpoint.open_write("never.bin")
    for chunk in payload_chunks(3 * MIB):
        stream.write(chunk)
    stream.abort()
    assert [r for r in app.requests if r.method in ("PUT", "POST")] == []


def test_push_memory_is_bounded(app: HttpApp, endpoint: HttpEndpoint, tmp_path: Any) -> None:
    size = 50 * MIB
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with source.open("wb") as out:
        for chunk in payload_chunks(size):
            digest.update(chunk)
            out.write(chunk)
    put(endpoint, "warm-up.txt", b"x")

    def push() -> int:
        with source.open("rb") as src, endpoint.open_write("big.bin") as stream:
            return copy_stream(src, stream)

    copied, peak = peak_memory(push)  # both sides count: the app runs in this process
    assert copied == size
    assert peak < 10 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert endpoint.last_response is not None
    assert json.loads(endpoint.last_response.body)["sha256"] == digest.hexdigest()
    assert app.spool_files() == []


def test_upload_is_never_redirected(app: HttpApp, opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(
        HttpEndpoint({"url": f"{app.url}/redirect", "method": "PUT", "path_in_url": True}, {"bearer": TOKEN})
    )
    with pytest.raises(EndpointError, match="HTTP 302"):
        put(endpoint, "x.txt", b"x")
    assert not (app.root / "x.txt").exists()


def test_wrong_push_url_is_a_config_error(app: HttpApp, opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(HttpEndpoint({"url": f"{app.url}/nowhere"}, {"bearer": TOKEN}))
    with pytest.raises(ConfigError, match="HTTP 404"):
        put(endpoint, "x.txt", b"x")


# --- pull ------------------------------------------------------------------------------------


def test_listing_as_a_plain_list_with_file_urls(app: HttpApp, endpoint: HttpEndpoint) -> None:
    app.list_format, app.list_urls = "list", True
    put(endpoint, "in/a.txt", b"A")
    put(endpoint, "in/b.txt", b"BB")
    [a, b] = endpoint.list("in")
    assert (a.path, a.size, b.path, b.size) == ("in/a.txt", 1, "in/b.txt", 2)
    assert a.etag
    assert get(endpoint, "in/b.txt") == b"BB"
    assert app.requests[-1].path == "/download/in/b.txt"  # the listed URL, not the default one
    endpoint.delete("in/b.txt")
    assert paths(endpoint, "in") == ["in/a.txt"]


def test_closing_a_read_early_leaves_the_endpoint_usable(endpoint: HttpEndpoint) -> None:
    put(endpoint, "long.bin", b"L" * (16 * MIB))
    put(endpoint, "short.txt", b"short")
    for _ in range(3):
        with endpoint.open_read("long.bin") as stream:
            assert stream.read(10) == b"L" * 10
        assert get(endpoint, "short.txt") == b"short"


def test_stat_falls_back_to_the_listing(app: HttpApp, endpoint: HttpEndpoint) -> None:
    app.head_allowed = False
    put(endpoint, "sub/x.bin", b"12345")
    info = endpoint.stat("sub/x.bin")
    assert (info.path, info.size) == ("sub/x.bin", 5)
    with pytest.raises(NotFound):
        endpoint.stat("sub/missing.bin")


def test_download_and_delete_templates(app: HttpApp, opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(
        make_endpoint(
            app, download_url=f"{app.url}/download/{{path}}", delete_url=f"{app.url}/files/{{path}}?really=1"
        )
    )
    put(endpoint, "t/x y.txt", b"templated")
    assert get(endpoint, "t/x y.txt") == b"templated"
    assert app.requests[-1].path == "/download/t/x%20y.txt"
    endpoint.delete("t/x y.txt")
    assert app.requests[-1].path == "/files/t/x%20y.txt?really=1"
    with pytest.raises(NotFound):
        endpoint.delete("t/x y.txt")


def test_same_origin_redirect_keeps_credentials(app: HttpApp, opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(
        make_endpoint(app, download_url=f"{app.url}/redirect/{{path}}", follow_redirects="same-host")
    )
    put(endpoint, "r.txt", b"followed")
    assert get(endpoint, "r.txt") == b"followed"


def test_redirect_to_another_origin_drops_credentials(app: HttpApp, opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(
        make_endpoint(
            app,
            download_url=f"{app.url}/redirect-away/{{path}}",
            headers={"X-Partner": "acme"},
            follow_redirects="any",
        )
    )
    put(endpoint, "r.txt", b"secret stuff")
    with pytest.raises(AuthError):
        endpoint.open_read("r.txt")
    last = app.requests[-1]
    assert last.path == "/files/r.txt"
    assert last.headers["host"].startswith("localhost:")
    assert "authorization" not in last.headers
    assert last.headers["x-partner"] == "acme"  # non-secret headers still go


def test_check_without_list_url(app: HttpApp, opened: contextlib.ExitStack) -> None:
    reachable = opened.enter_context(HttpEndpoint({"url": f"{app.url}/files"}, {"bearer": TOKEN}))
    reachable.check()  # HEAD answers 405: reachable
    refused = opened.enter_context(HttpEndpoint({"url": f"{app.url}/files"}, {"bearer": "wrong-token"}))
    with pytest.raises(AuthError):
        refused.check()


# --- auth ------------------------------------------------------------------------------------


def test_wrong_bearer_is_auth_error(app: HttpApp, opened: contextlib.ExitStack) -> None:
    app.echo_auth = True  # the server quotes our Authorization header back: it must be redacted
    endpoint = opened.enter_context(make_endpoint(app, secrets={"bearer": "wrong-token-123"}))
    with pytest.raises(AuthError) as caught:
        put(endpoint, "x.txt", b"x")
    assert not caught.value.retryable
    assert "HTTP 401" in str(caught.value)
    assert "wrong-token-123" not in str(caught.value)
    assert endpoint.last_response is not None
    assert "wrong-token-123" not in json.dumps(endpoint.last_response.to_dict())
    assert '"authorization": "***"' in endpoint.last_response.body
    for operation in ("stat", "open_read", "delete"):
        with pytest.raises(AuthError) as caught:
            getattr(endpoint, operation)("x.txt")
        assert "wrong-token-123" not in str(caught.value)
    with pytest.raises(AuthError):
        endpoint.check()


def test_read_only_token_is_permission_denied(
    app: HttpApp, endpoint: HttpEndpoint, opened: contextlib.ExitStack
) -> None:
    put(endpoint, "r.txt", b"readable")
    reader = opened.enter_context(make_endpoint(app, secrets={"bearer": READ_ONLY}))
    assert get(reader, "r.txt") == b"readable"
    with pytest.raises(PermissionDenied, match="HTTP 403"):
        put(reader, "w.txt", b"x")
    with pytest.raises(PermissionDenied):
        reader.delete("r.txt")


def test_basic_auth(app: HttpApp, opened: contextlib.ExitStack) -> None:
    app.auth = "basic"
    endpoint = opened.enter_context(
        make_endpoint(app, secrets={"basic_user": "acme", "basic_password": PASSWORD})
    )
    put(endpoint, "b.txt", b"basic")
    assert get(endpoint, "b.txt") == b"basic"
    app.echo_auth = True
    wrong = opened.enter_context(
        make_endpoint(app, secrets={"basic_user": "acme", "basic_password": "not-the-password"})
    )
    with pytest.raises(AuthError) as caught:
        put(wrong, "c.txt", b"x")
    assert "not-the-password" not in str(caught.value)
    assert wrong.last_response is not None
    assert '"authorization": "***"' in wrong.last_response.body


def test_secret_headers(app: HttpApp, opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(
        make_endpoint(app, secrets={"headers": {"Authorization": f"Bearer {TOKEN}"}})
    )
    put(endpoint, "h.txt", b"via secret header")
    assert endpoint.uri("h.txt").count(TOKEN) == 0
    assert get(endpoint, "h.txt") == b"via secret header"


# --- network failures ------------------------------------------------------------------------


def test_server_down_is_transient_then_delivers(app: HttpApp, endpoint: HttpEndpoint) -> None:
    put(endpoint, "before.txt", b"up")  # a pooled keep-alive connection exists
    app.stop()
    try:
        with pytest.raises(Unreachable, match=r"refused|could not talk") as caught:
            put(endpoint, "during.txt", b"x")
        assert caught.value.retryable
        assert TOKEN not in str(caught.value)
        for operation in ("stat", "open_read", "delete"):
            with pytest.raises(TransientError):
                getattr(endpoint, operation)("before.txt")
    finally:
        app.start()
    put(endpoint, "during.txt", b"delivered")
    assert stored(app, "during.txt") == b"delivered"


def test_nothing_listening_is_refused(opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(
        HttpEndpoint({"url": f"http://127.0.0.1:{free_port()}/in"}, {"bearer": TOKEN})
    )
    with pytest.raises(Unreachable, match="refused"):
        put(endpoint, "x.txt", b"x")


def test_slow_server_times_out(app: HttpApp, opened: contextlib.ExitStack) -> None:
    app.delay = 2
    endpoint = opened.enter_context(make_endpoint(app, timeout=0.3))
    with pytest.raises(Unreachable, match="timed out"):
        endpoint.stat("x.txt")
    app.delay = 0


def test_unknown_host_names_dns(opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(
        HttpEndpoint({"url": "http://no-such-host.invalid/in"}, {"bearer": TOKEN})
    )
    with pytest.raises(DnsError, match=r"DNS lookup of no-such-host\.invalid failed") as caught:
        put(endpoint, "x.txt", b"x")
    assert not caught.value.retryable


def test_untrusted_certificate_is_refused(https_app: HttpApp, opened: contextlib.ExitStack) -> None:
    https_app.reset()
    endpoint = opened.enter_context(make_endpoint(https_app))
    with pytest.raises(TlsError, match="TLS certificate verify failed") as caught:
        put(endpoint, "x.txt", b"x")
    assert not caught.value.retryable
    assert not (https_app.root / "x.txt").exists()


def test_configured_ca_is_trusted(https_app: HttpApp, opened: contextlib.ExitStack) -> None:
    https_app.reset()
    assert https_app.ca_file is not None
    endpoint = opened.enter_context(make_endpoint(https_app, verify=str(https_app.ca_file)))
    put(endpoint, "tls.txt", b"over tls")
    assert get(endpoint, "tls.txt") == b"over tls"
    assert endpoint.uri("tls.txt").startswith("https://127.0.0.1:")
    insecure = opened.enter_context(make_endpoint(https_app, verify=False))
    assert get(insecure, "tls.txt") == b"over tls"


def test_missing_ca_file_is_a_config_error(app: HttpApp, opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(make_endpoint(app, verify="/nonexistent/ca.pem"))
    with pytest.raises(ConfigError, match="CA file"):
        endpoint.check()
