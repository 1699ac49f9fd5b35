"""Issue 10, item 12: an HTTP source or destination follows no redirect unless its endpoint allows
it, and never into a loopback, link-local or private range its own URL is not in (SSRF).

Against the real HTTP test app (its `/redirect-to?location=URL` answers 302 to any URL, as a
hostile server would); the "may this URL be fetched" check itself with literal addresses."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Any
from urllib.parse import quote

import pytest

from core.endpoints.base import AuthError
from core.endpoints.http import HttpEndpoint, RedirectRefused
from core.netpolicy import UrlNotAllowed, address_kind, check_public_url, check_url
from tasks.retry import is_retryable
from tests.endpoint_servers.http_app import HttpApp
from tests.endpoints.contract import get, put

TOKEN = "test-token-rw"


@pytest.fixture
def app(http_app: HttpApp) -> HttpApp:
    http_app.reset()
    return http_app


def redirecting_to(app: HttpApp, location: str, **config: Any) -> HttpEndpoint:
    """A source polling one URL, which the server answers with a redirect to `location`."""
    pull_url = f"{app.url}/redirect-to?location={quote(location, safe='')}"
    return HttpEndpoint({"url": f"{app.url}/files", "pull_url": pull_url, **config}, {"bearer": TOKEN})


def requested(app: HttpApp) -> list[str]:
    return [seen.path.split("?")[0] for seen in app.requests]


def test_redirects_are_not_followed_by_default(app: HttpApp, opened: contextlib.ExitStack) -> None:
    (app.root / "settings.json").write_text('{"secret": "admin settings"}')
    endpoint = opened.enter_context(
        redirecting_to(app, f"{app.url}/files/settings.json", pull_name="report.csv")
    )
    for step in (lambda: list(endpoint.list()), lambda: get(endpoint, "report.csv")):
        with pytest.raises(RedirectRefused) as caught:
            step()
        message = str(caught.value)
        assert f"HTTP 302 redirect to {app.url}/files/settings.json" in message  # names the Location
        assert "follows no redirects" in message and "same-host or any" in message
        assert not is_retryable(caught.value)  # the same answer comes next time
    assert "/files/settings.json" not in requested(app)


def test_the_issue_redirect_to_prefect_settings_is_refused(
    app: HttpApp, opened: contextlib.ExitStack
) -> None:
    endpoint = opened.enter_context(
        redirecting_to(app, "http://127.0.0.1:4200/api/admin/settings", pull_name="stock.csv")
    )
    with pytest.raises(RedirectRefused, match=re.escape("127.0.0.1:4200/api/admin/settings")):
        get(endpoint, "stock.csv")


def test_same_host_follows_on_the_host_and_keeps_credentials(
    app: HttpApp, opened: contextlib.ExitStack
) -> None:
    put(
        opened.enter_context(
            HttpEndpoint({"url": f"{app.url}/files", "method": "PUT", "path_in_url": True}, {"bearer": TOKEN})
        ),
        "r.txt",
        b"followed",
    )
    endpoint = opened.enter_context(
        redirecting_to(app, f"{app.url}/files/r.txt", pull_name="r.txt", follow_redirects="same-host")
    )
    assert get(endpoint, "r.txt") == b"followed"  # /files needs the token: it went along
    away = opened.enter_context(
        redirecting_to(
            app, f"http://localhost:{app.port}/files/r.txt", pull_name="r.txt", follow_redirects="same-host"
        )
    )
    with pytest.raises(RedirectRefused, match=re.escape(f"localhost:{app.port}/files/r.txt, another host")):
        get(away, "r.txt")
    assert app.requests[-1].headers["host"].startswith("127.0.0.1")  # localhost never asked


def test_any_follows_another_host_without_our_credentials(app: HttpApp, opened: contextlib.ExitStack) -> None:
    (app.root / "r.txt").write_bytes(b"elsewhere")
    endpoint = opened.enter_context(
        redirecting_to(
            app, f"http://localhost:{app.port}/files/r.txt", pull_name="r.txt", follow_redirects="any"
        )
    )
    with pytest.raises(AuthError):  # localhost is another origin: the bearer token stayed home
        get(endpoint, "r.txt")
    last = app.requests[-1]
    assert last.headers["host"].startswith("localhost:")
    assert "authorization" not in last.headers


@pytest.mark.parametrize(
    "inward",
    [
        "http://169.254.169.254/latest/meta-data/iam",  # a cloud metadata service
        "http://10.0.0.7/admin",
        "http://192.168.1.1/",
        "http://[fd00::5]/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_even_any_never_reaches_a_range_the_endpoint_is_not_in(
    app: HttpApp, inward: str, opened: contextlib.ExitStack
) -> None:
    endpoint = opened.enter_context(redirecting_to(app, inward, pull_name="x.csv", follow_redirects="any"))
    with pytest.raises(RedirectRefused, match="address") as caught:
        get(endpoint, "x.csv")
    assert "an endpoint reaches no non-public range its own URL is not in" in str(caught.value)


def test_https_is_not_left_for_plain_http(
    https_app: HttpApp, http_app: HttpApp, opened: contextlib.ExitStack
) -> None:
    https_app.reset()
    http_app.reset()
    (http_app.root / "r.txt").write_bytes(b"in clear")
    location = quote(f"{http_app.url}/files/r.txt", safe="")
    endpoint = opened.enter_context(
        HttpEndpoint(
            {
                "url": f"{https_app.url}/files",
                "pull_url": f"{https_app.url}/redirect-to?location={location}",
                "pull_name": "r.txt",
                "follow_redirects": "any",
                "verify": str(https_app.ca_file),
            },
            {"bearer": TOKEN},
        )
    )
    with pytest.raises(RedirectRefused, match="leaves HTTPS"):
        get(endpoint, "r.txt")


def test_a_listing_naming_a_file_on_another_host_is_refused(
    app: HttpApp, opened: contextlib.ExitStack
) -> None:
    app.list_format, app.list_urls = "list", True
    (app.root / "a.txt").write_bytes(b"A")
    endpoint = opened.enter_context(
        HttpEndpoint({"url": f"{app.url}/files", "list_url": f"{app.url}/files"}, {"bearer": TOKEN})
    )
    [info] = endpoint.list()
    assert get(endpoint, info.path) == b"A"  # a URL on the listing's own host: fine
    # A listing that names another host is a redirect in all but name.
    endpoint._listed_urls["a.txt"] = f"http://localhost:{app.port}/files/a.txt"
    with pytest.raises(RedirectRefused, match="the listing names a file at"):
        get(endpoint, "a.txt")


def test_uploads_and_deletes_never_follow(app: HttpApp, opened: contextlib.ExitStack) -> None:
    endpoint = opened.enter_context(
        HttpEndpoint(
            {"url": f"{app.url}/redirect-to?location=/files/x.txt", "follow_redirects": "any"},
            {"bearer": TOKEN},
        )
    )
    with pytest.raises(Exception, match="HTTP 302"):
        put(endpoint, "x.txt", b"x")
    assert not (app.root / "x.txt").exists()
    (app.root / "kept.txt").write_bytes(b"kept")
    deleting = opened.enter_context(
        HttpEndpoint(
            {
                "url": f"{app.url}/files",
                "delete_url": f"{app.url}/redirect-to?location=/files/{{path}}",
                "follow_redirects": "any",
            },
            {"bearer": TOKEN},
        )
    )
    with pytest.raises(Exception, match="HTTP 302"):
        deleting.delete("kept.txt")
    assert (app.root / "kept.txt").exists()


def test_follow_redirects_setting_is_checked() -> None:
    with pytest.raises(Exception, match="follow_redirects"):
        HttpEndpoint({"url": "https://a.example/", "follow_redirects": "always"})


# --- the check itself (pure logic on literal addresses: no DNS involved) -------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_check_public_url() -> None:
    check_public_url("https://8.8.8.8/x", allow_private=False)
    check_public_url("http://127.0.0.1:4200/api", allow_private=True)
    for url in ("http://127.0.0.1:4200/api/admin/settings", "http://[::1]/", "http://10.0.0.1/"):
        with pytest.raises(UrlNotAllowed, match="address"):
            check_public_url(url, allow_private=False)
    for url in ("file:///etc/passwd", "gopher://8.8.8.8/", "http:///nohost"):
        with pytest.raises(UrlNotAllowed):
            check_public_url(url, allow_private=True)
    with pytest.raises(UrlNotAllowed, match="'localhost' is at"):
        check_url("http://localhost:4200/api?token=abc")
    with pytest.raises(UrlNotAllowed) as caught:
        check_url("http://u:pw-secret@127.0.0.1/x?token=abc")
    assert "pw-secret" not in str(caught.value) and "abc" not in str(caught.value)
    check_url("http://10.0.0.1/", frozenset({"private"}))


def test_the_endpoint_connects_to_no_range_its_own_urls_are_not_in(
    app: HttpApp, opened: contextlib.ExitStack
) -> None:
    """What passed the hop check is checked again at connect time, so a name that re-resolves to
    loopback (DNS rebinding) is refused: an endpoint on a public address never reaches 127.0.0.1."""
    import httpx

    public = opened.enter_context(HttpEndpoint({"url": "http://93.184.216.34/files"}, {"bearer": TOKEN}))
    with pytest.raises(httpx.ConnectError, match="loopback"):
        public.client.get(f"{app.url}/files/")
    assert app.requests == []
    # Its own range: allowed.
    local = opened.enter_context(HttpEndpoint({"url": f"{app.url}/files"}, {"bearer": TOKEN}))
    assert (
        local.client.get(f"{app.url}/files/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    )
