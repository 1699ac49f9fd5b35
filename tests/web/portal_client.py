"""Helpers for the portal's tests over plain HTTP: partners, a logged-in browser-like httpx client,
and the five tus requests (what tus-js-client sends, header for header)."""

from __future__ import annotations

import base64
import itertools
import socket

import httpx
from sqlmodel import select

from core import partners
from core.db import session_scope
from core.models import Partner, Receipt, WebUpload
from tests.b2b.web_server import forms_of
from tests.tenancy import home_scope
from tests.web.server import WebServer

PASSWORD = "Pw-portal-test-01"
TUS = {"Tus-Resumable": "1.0.0"}
_names = itertools.count(1)
_addresses = (f"198.51.100.{n}" for n in itertools.count(100))


def new_partner(prefix: str = "portal", *, max_file_bytes: int | None = None) -> str:
    """A partner with a password (and a size limit, when asked)."""
    name = f"{prefix}{next(_names)}"
    with session_scope() as session:
        scope = home_scope(session)
        partner = partners.add(session, scope, name, password=PASSWORD)
        if max_file_bytes is not None:
            partners.configure(session, scope, partner, max_file_bytes=max_file_bytes)
    return name


class Portal:
    """A logged-in browser (cookies, Origin, Sec-Fetch-Site) and its CSRF token for scripts."""

    def __init__(self, server: WebServer, name: str, password: str = PASSWORD) -> None:
        self.client = server.browser(**{"X-Forwarded-For": next(_addresses)})
        page = self.client.get("/login")
        form = forms_of(page)["/login"]
        answer = self.client.post("/login", data={**form, "name": name, "password": password})
        assert answer.status_code == 303, answer.text
        self.name = name
        self.csrf = forms_of(self.client.get("/portal", follow_redirects=True))["/logout"]["csrf"]

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Portal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def headers(self, **extra: str) -> dict[str, str]:
        return {**TUS, "X-CSRF-Token": self.csrf, "Accept": "*/*", **extra}

    def create(self, name: str, length: int, folder: str | None = None, **extra: str) -> httpx.Response:
        meta = f"filename {b64(name)}" + (f",folder {b64(folder)}" if folder is not None else "")
        headers = self.headers(**{"Upload-Length": str(length), "Upload-Metadata": meta, **extra})
        return self.client.post("/portal/uploads", headers=headers)

    def new_upload(self, name: str, length: int) -> str:
        return self.new_upload_in(name, length, None)

    def new_upload_in(self, name: str, length: int, folder: str | None) -> str:
        answer = self.create(name, length, folder)
        assert answer.status_code == 201, answer.text
        return answer.headers["location"]

    def patch(self, url: str, offset: int, data: bytes, **extra: str) -> httpx.Response:
        headers = self.headers(
            **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **extra}
        )
        return self.client.patch(url, headers=headers, content=data)

    def silent_patch(self, server_url: str, url: str, length: int, first: bytes) -> socket.socket:
        """A PATCH that sends `first` of its `length` body bytes and then nothing (the caller closes
        the returned socket)."""
        cookies = "; ".join(f"{k}={v}" for k, v in self.client.cookies.items())
        host, port = server_url.removeprefix("http://").split(":")
        head = (
            f"PATCH {url} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookies}\r\n"
            f"Origin: {server_url}\r\nX-CSRF-Token: {self.csrf}\r\n"
            "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        sock = socket.create_connection((host, int(port)))
        sock.sendall(head.encode() + first)
        return sock

    def head(self, url: str) -> httpx.Response:
        return self.client.head(url, headers=self.headers())

    def delete(self, url: str) -> httpx.Response:
        return self.client.delete(url, headers=self.headers())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def receipts_of(partner: str) -> list[Receipt]:
    with session_scope() as session:
        found = session.exec(
            select(Receipt).join(Partner).where(Partner.name == partner).order_by(Receipt.id)  # type: ignore[arg-type]
        )
        return list(found)


def upload_row(url: str) -> WebUpload:
    with session_scope() as session:
        row = session.get(WebUpload, url.rsplit("/", 1)[1])
        assert row is not None
        session.expunge(row)
        return row
