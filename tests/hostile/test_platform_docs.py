"""`/docs` and `/redoc` work without internet: every script, style and icon comes from the server.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, fonts from Google and a favicon from
fastapi.tiangolo.com; on an offline machine `/docs` was blank. The pages are fetched from the real
app served by uvicorn, and every `src`/`href` in them is fetched in turn.
"""

from __future__ import annotations

import socket
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
    assert '"validatorUrl": null' in html


def test_assets_ship_with_the_package() -> None:
    """pyproject's package-data carries api/static into an installed tradelane."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["api"]
    shipped = {p.relative_to(root / "api") for g in globs for p in (root / "api").glob(g) if p.is_file()}
    served = {p.relative_to(root / "api") for p in (root / "api" / "static").rglob("*") if p.is_file()}
    assert served <= shipped
