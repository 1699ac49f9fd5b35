"""A trading partner for AS2 tests: its own identity, a client that builds messages to us, and a
small AS2 server (stdlib http.server + pyas2lib, sharing no code with tradelane) that receives
what we send and answers with sync or async MDNs, or with none when told to drop them."""

from __future__ import annotations

import email
import threading
from dataclasses import dataclass, field
from email import message as email_message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pyas2lib
from pyas2lib.cms import compress_message, encrypt_message
from pyas2lib.utils import mime_to_bytes

from core.as2.identity import self_signed


@dataclass
class Identity:
    """An AS2 ID with a key pair: PEM key and certificate, and files for openssl."""

    as2_id: str
    key_pem: str
    cert_pem: str

    @classmethod
    def new(cls, as2_id: str) -> Identity:
        key, cert = self_signed(as2_id)
        return cls(as2_id, key, cert)

    @property
    def pem(self) -> bytes:
        return (self.key_pem + self.cert_pem).encode()

    def organization(self, mdn_url: str | None = None) -> Any:
        return pyas2lib.Organization(
            as2_name=self.as2_id, sign_key=self.pem, decrypt_key=self.pem, mdn_url=mdn_url, domain="peer.test"
        )


def partner_of(ident: Identity, **options: Any) -> Any:
    """pyas2lib's view of `ident` as a partner (its certificate for verifying and encrypting)."""
    cert = ident.cert_pem.encode()
    return pyas2lib.Partner(
        as2_name=ident.as2_id, verify_cert=cert, encrypt_cert=cert, validate_certs=False, **options
    )


def wire(message: Any) -> tuple[dict[str, str], bytes]:
    headers = {k: " ".join(str(v).split()) for k, v in message.headers.items()}
    return headers, bytes(message.content)


def post(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(url, headers=headers, content=body, timeout=60)


def judge_mdn(response: httpx.Response, original: Any) -> tuple[str | None, str | None, Any]:
    """(status, detail, Mdn) of a sync MDN answering `original`, checked by pyas2lib."""
    raw = b"".join(f"{k}: {v}\r\n".encode() for k, v in response.headers.items()) + b"\r\n" + response.content
    mdn = pyas2lib.Mdn()
    status, detail = mdn.parse(raw, lambda mid, _rcpt: original if mid == original.message_id else None)
    return status, detail, mdn


def compressed_after_signing(sender: Any, receiver: Any, data: bytes, filename: str, cipher: str) -> Any:
    """A message signed, THEN compressed, then encrypted (pyas2lib only builds compress-then-sign)."""
    signed = pyas2lib.Message(sender=sender, receiver=receiver)
    signed.build(data, filename=filename, content_type="application/octet-stream")
    as2_headers = {k: v for k, v in signed.payload.items() if not k.lower().startswith("content-")}
    inner = signed.payload
    for k in as2_headers:
        del inner[k]
    compressed = email_message.Message()
    compressed.set_type("application/pkcs7-mime")
    compressed.set_param("smime-type", "compressed-data")
    compressed.set_param("name", "smime.p7z")
    compressed.add_header("Content-Transfer-Encoding", "binary")
    compressed.set_payload(compress_message(mime_to_bytes(inner)))
    outer = email_message.Message()
    outer.set_type("application/pkcs7-mime")
    outer.set_param("smime-type", "enveloped-data")
    outer.set_param("name", "smime.p7m")
    outer.add_header("Content-Transfer-Encoding", "binary")
    outer.set_payload(encrypt_message(mime_to_bytes(compressed), cipher, receiver.load_encrypt_cert()))
    for k, v in as2_headers.items():
        outer.add_header(k, v)
    signed.payload = outer
    return signed  # .message_id and .mic (of the signed content) are the original's


@dataclass
class Received:
    message_id: str
    status: str
    detail: str | None
    payload: bytes
    filename: str | None
    headers: dict[str, str]
    raw_body: bytes


@dataclass
class PeerServer:
    """An AS2 server at `url` for organization `me` that knows tradelane as `partner`."""

    me: Identity
    partner: Any
    url: str = ""
    received: list[Received] = field(default_factory=list)
    drop_async_mdns: int = 0  # how many async MDNs to "lose" before sending one
    mdn_sign_identity: Identity | None = None  # sign MDNs with another key (a forged MDN)
    sign_mdns: bool = True  # False: unsigned MDNs even when signed ones are asked for
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PeerServer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status_code, headers, answer = peer.handle(dict(self.headers.items()), body)
                self.send_response(status_code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/as2"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        raw = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n" + body
        org = self.me.organization()
        if not self.sign_mdns:
            org = pyas2lib.Organization(as2_name=self.me.as2_id, decrypt_key=self.me.pem)
        elif self.mdn_sign_identity is not None:
            org = pyas2lib.Organization(
                as2_name=self.me.as2_id, sign_key=self.mdn_sign_identity.pem, decrypt_key=self.me.pem
            )
        message = pyas2lib.Message()
        status, (exc, _), mdn = message.parse(
            raw, find_org_partner_cb=lambda _org, _partner: (org, self.partner)
        )
        payload = message.content if status == "processed" else b""
        filename = message.payload.get_filename() if status == "processed" else None
        with self.lock:
            self.received.append(
                Received(
                    message.message_id,
                    status,
                    getattr(exc, "disposition_modifier", None),
                    payload if isinstance(payload, bytes) else payload.encode(),
                    filename,
                    headers,
                    body,
                )
            )
        if mdn is None:
            return 200, {}, b""
        mdn_headers = {k: " ".join(str(v).split()) for k, v in mdn.headers.items()}
        if mdn.mdn_mode == "ASYNC":
            with self.lock:
                drop = self.drop_async_mdns > 0
                self.drop_async_mdns -= 1 if drop else 0
            if not drop:
                threading.Timer(
                    0.05,
                    lambda: httpx.post(mdn.mdn_url, headers=mdn_headers, content=mdn.content, timeout=30),
                ).start()
            return 200, {}, b""
        return 200, mdn_headers, mdn.content


def parse_entity(data: bytes) -> email_message.Message:
    return email.message_from_bytes(data)
