"""`/docs` and `/redoc` work without internet: every script, style and icon comes from the server.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, fonts from Google and a favicon from
fastapi.tiangolo.com; on an offline machine `/docs` was blank. The pages are fetched from the real
app served by uvicorn, and every `src`/`href` in them is fetched in turn. They run under a CSP with
no 'unsafe-inline' in any script directive (their init scripts are files), and Debian's headless
Chromium, with every host name but 127.0.0.1 unresolvable, renders them with no CSP refusal but the
one expected: ReDoc's logo from cdn.redoc.ly, which the policy blocks.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import uvicorn

from api.app import create_app
from tests.isolation import isolated_home


class References(HTMLParser):
    """Every URL a page makes the browser load or link to (src and href attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with isolated_home(tmp_path_factory.mktemp("docs-home")):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_loads_only_from_the_server(api_url: str, page: str) -> None:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        answer = client.get(page)
        assert answer.status_code == 200
        html = answer.text
        assert "://" not in html, "the page names another host"
        parser = References()
        parser.feed(html)
        assert parser.urls, "the page references no assets at all"
        kinds = set()
        for url in parser.urls:
            parts = urlsplit(urljoin(f"{api_url}{page}", url))
            assert f"{parts.scheme}://{parts.netloc}" == api_url, url
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert int(asset.headers["content-length"]) > 0, url
            kinds.add(Path(parts.path).suffix)
        # The page's own script: Swagger UI or ReDoc, from this server.
        assert ".js" in kinds and ".png" in kinds
        assert client.get("/openapi.json").status_code == 200


def test_swagger_ui_does_not_ask_the_online_validator(api_url: str) -> None:
    html = httpx.get(f"{api_url}/docs").text
    init = re.findall(r'<script src="([^"]*init[^"]*)"', html)
    assert init == ["/static/web/docs-init.js"]
    assert "validatorUrl: null" in httpx.get(f"{api_url}{init[0]}").text


def directives(csp: str) -> dict[str, list[str]]:
    parsed = {}
    for part in csp.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_docs_pages_run_no_inline_script_and_cannot_be_framed(api_url: str, page: str) -> None:
    answer = httpx.get(f"{api_url}{page}")
    policy = directives(answer.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["script-src-attr"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"] and answer.headers["x-frame-options"] == "DENY"
    assert "cdn.redoc.ly" not in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    # Every script the page runs is a file from this server: no inline script, no event attribute.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text) == []
    assert re.search(r"\son[a-z]+=", answer.text) is None
    assert answer.headers.get("strict-transport-security") is None  # plain HTTP: not sent


def render(url: str) -> tuple[str, list[str]]:
    """The DOM Chromium built from `url`, offline but for 127.0.0.1, and its CSP refusals."""
    run = subprocess.run(
        [
            "/usr/bin/chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    refusals = [line for line in run.stderr.splitlines() if "Content Security Policy" in line]
    return run.stdout, refusals


def test_swagger_ui_renders_offline_under_its_csp(api_url: str) -> None:
    dom, refusals = render(f"{api_url}/docs")
    assert refusals == []
    assert 'class="opblock-summary-path" data-path="/api/authentication"' in dom


def test_redoc_renders_offline_under_its_csp(api_url: str) -> None:
    dom, refusals = render(f"{api_url}/redoc")
    assert "Something went wrong" not in dom
    assert "/api/authentication" in dom and "Partner" in dom
    # The one thing blocked: ReDoc 2.5.4's unconditional logo from its CDN (hidden when it fails).
    assert len(refusals) == 1 and "https://cdn.redoc.ly/redoc/logo-mini.svg" in refusals[0], refusals
    assert "cdn.redoc.ly" not in dom


def test_assets_ship_with_the_package() -> None:
    """pyproject's package-data carries api/static into an installed tradelane."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["api"]
    shipped = {p.relative_to(root / "api") for g in globs for p in (root / "api").glob(g) if p.is_file()}
    served = {p.relative_to(root / "api") for p in (root / "api" / "static").rglob("*") if p.is_file()}
    assert served <= shipped
