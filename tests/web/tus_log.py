"""What a page said to /portal/uploads and what it was answered, in order, as the browser saw it: each
tus request's method, upload id and Upload-Offset, then its status and the Upload-Offset answered
(or why it failed), with the page's loads between them. tests/web/conftest.py keeps one per test
page and prints it under a failing test, so a browser upload that went wrong in CI says how."""

from __future__ import annotations

import time

from playwright.async_api import Page, Request, Response

TUS_PATH = "/portal/uploads"


def _is_tus(url: str) -> bool:
    return TUS_PATH in url


def upload_id(url: str) -> str:
    """The upload a tus URL names ("" for the creation endpoint)."""
    return url.split(TUS_PATH, 1)[1].split("?", 1)[0].strip("/")


def _short(url: str) -> str:
    return upload_id(url)[:8] or "-"  # enough of the id to tell uploads apart


class TusLog:
    """The tus requests and answers of one page (reloads included), as lines."""

    def __init__(self, page: Page) -> None:
        self.began = time.monotonic()
        self.lines: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, upload id or "" for a creation), in order
        self._numbers: dict[int, int] = {}  # id(request) -> its number in the log
        page.on("request", self._request)
        page.on("response", self._response)
        page.on("requestfailed", self._failed)
        page.on("load", lambda _page: self._note("page loaded"))

    def _note(self, text: str) -> None:
        self.lines.append(f"{time.monotonic() - self.began:7.3f}s {text}")

    def _number(self, request: Request) -> int:
        return self._numbers.setdefault(id(request), len(self._numbers) + 1)

    def _request(self, request: Request) -> None:
        if not _is_tus(request.url):
            return
        self.requests.append((request.method, upload_id(request.url)))
        offset = request.headers.get("upload-offset")
        sent = f" Upload-Offset: {offset}" if offset is not None else ""
        length = request.headers.get("upload-length")
        sent += f" Upload-Length: {length}" if length is not None else ""
        self._note(f"#{self._number(request)} {request.method} {_short(request.url)}{sent}")

    def _response(self, response: Response) -> None:
        request = response.request
        if not _is_tus(request.url):
            return
        headers = response.headers
        answered = "".join(
            f" {name}: {headers[name.lower()]}"
            for name in ("Upload-Offset", "Location")
            if name.lower() in headers
        )
        said = f"{request.method} {_short(request.url)} -> {response.status}{answered}"
        self._note(f"#{self._number(request)} {said}")

    def _failed(self, request: Request) -> None:
        if _is_tus(request.url):
            why = request.failure or "failed"
            self._note(f"#{self._number(request)} {request.method} {_short(request.url)} -> {why}")

    def __str__(self) -> str:
        return "\n".join(self.lines) or "(no tus request)"
