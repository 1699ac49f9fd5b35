"""The hidden `peer` endpoint: the sending instance's side of a cross-instance connection (DESIGN-12 §5.5).

Made by tradelane when a connection to another instance becomes active on the sending side
(core/b2b/push_flow.py), never by `endpoint add` (`internal`). Its one setting names the
connection; the keys live sealed on the connection's `peer` row, so the endpoint holds no secret.

It is a `KeptFileSink`: `core.delivery.push` hands it the kept file's local path, and it pushes
the file with the resumable upload protocol of §5.5 - create (or find) the upload at the peer,
then PATCH the bytes from the offset the peer already holds, in 1 MiB reads, over a signed request
(core/b2b/signing.py) through netpolicy's guarded transport. The peer answers with a signed
receipt, which is checked against what was sent and kept as the transfer's destination answer.
The peer's own idempotency (connection, original transfer, SHA-256) replaces reading the
destination back: a file the peer took is never taken twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, NoReturn
from urllib.parse import urlsplit

import httpx
from sqlmodel import select

from core import netpolicy
from core.b2b import keys, peer_client, receipts
from core.b2b.signing import UPLOAD_OFFSET_HEADER, sign_request
from core.db import session_scope
from core.delivery import Delivered, PushKey
from core.derived import Carried
from core.endpoints.base import (
    AuthError,
    ConfigError,
    Deferrable,
    Endpoint,
    EndpointError,
    FileInfo,
    NotFound,
    OnConflict,
    PermissionDenied,
    TransientError,
    WriteStream,
)
from core.endpoints.settings import EndpointSecrets, EndpointSettings
from core.models import Connection, ConnectionState, Peer

READ_CHUNK = 1024 * 1024
TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)
# A PATCH answered 409 (another offset) is sent again from the offset the peer holds; more than
# this many in one try means something else writes the same upload: leave it to the next try.
MAX_OFFSET_RETRIES = 3


class PeerUnreachable(Deferrable):
    """The peer instance did not answer, broke the connection, or answered 5xx: try much later."""


class PeerSettings(EndpointSettings):
    """The sending side of one cross-instance connection (made by tradelane, not by `endpoint add`)."""

    connection: int
    """The connection's id on this instance."""


class PeerEndpoint(Endpoint):
    """Pushes a connection's files to the peer instance; see the module docstring."""

    scheme: ClassVar[str] = "peer"
    internal: ClassVar[bool] = True
    settings: PeerSettings
    secrets: EndpointSecrets

    # --- an endpoint of nothing but `send_kept`: the other operations are not for a peer -------

    def _refuse(self) -> NoReturn:
        raise ConfigError("a peer endpoint only carries its connection's files to the other instance")

    def list(self, folder: str = "") -> Iterator[FileInfo]:
        self._refuse()

    def stat(self, path: str) -> FileInfo:
        self._refuse()

    def open_read(self, path: str) -> BinaryIO:
        self._refuse()

    def open_write(self, path: str, on_conflict: OnConflict = OnConflict.overwrite) -> WriteStream:
        self._refuse()

    def delete(self, path: str) -> None:
        self._refuse()

    def check(self) -> None:
        self._peer()

    def uri(self, path: str) -> str:
        return f"peer:{self.settings.connection}/{path}"

    # --- the push -----------------------------------------------------------------------------

    def _peer(self) -> Peer:
        with session_scope() as session:
            conn = session.get(Connection, self.settings.connection)
            peer = session.exec(select(Peer).where(Peer.connection_id == self.settings.connection)).first()
        # Only the sending account's own connection: the id in a setting must not reach another's.
        if conn is None or peer is None or conn.sender_account_id != self.account_id:
            raise ConfigError(f"connection {self.settings.connection} has no peer instance")
        if conn.state == ConnectionState.revoked:
            raise PermissionDenied("the connection was revoked; nothing more is sent")
        if peer.their_connection_uid is None or peer.their_key_id is None or peer.their_public_key is None:
            raise ConfigError(f"connection {self.settings.connection}: the peer's keys are not known yet")
        return peer

    def send_kept(self, file: Carried, key: PushKey) -> Delivered:
        """Push the carried file (the receipt's kept file, or the last one a template's step made
        from it) to the peer, from the offset the peer already holds."""
        path = file.path
        try:
            kept_size = os.stat(path).st_size
        except OSError as exc:
            raise NotFound(f"{file.name}: the file to send cannot be read: {exc.strerror}") from None
        if kept_size != file.size:
            raise EndpointError(f"{file.name}: the file to send is not the size it was made; not sent")
        peer = self._peer()
        assert peer.their_connection_uid is not None and peer.their_key_id is not None
        assert peer.their_public_key is not None
        signer = keys.our_key(peer)
        transfer_key = receipts.TransferKey(peer.their_connection_uid, key.transfer_id, key.sha256)
        expected = receipts.Expected(transfer_key.text(), file.name, file.size, file.sha256)
        base = f"{peer.base_url.rstrip('/')}/peer/v1/connections/{peer.their_connection_uid}/uploads"
        with peer_client.open_client(TIMEOUT) as client:
            created = _send(
                client,
                client.build_request(
                    "POST",
                    base,
                    json={
                        "key": expected.key,
                        "name": expected.name,
                        "size": expected.size,
                        "sha256": expected.sha256,
                    },
                ),
                signer,
            )
            answer = _answer(created, "create the upload")
            for _ in range(MAX_OFFSET_RETRIES):
                if answer.get("complete") is True:
                    break
                upload, offset = str(answer.get("upload", "")), answer.get("offset")
                if not upload or not isinstance(offset, int) or not 0 <= offset <= file.size:
                    raise TransientError(f"the peer answered an unusable upload state: {_short(answer)}")
                request = _patch(client, f"{base}/{upload}", path, offset, file.size)
                patched = _send(client, request, signer)
                if patched.status_code == 409 and isinstance(_json(patched).get("offset"), int):
                    answer = {"upload": upload, "offset": _json(patched)["offset"]}
                    continue
                answer = _answer(patched, "upload the file")
            if answer.get("complete") is not True:
                raise TransientError("the peer kept answering another offset; trying again later")
        try:
            signed = receipts.SignedReceipt.from_json(answer)
            receipts.check(
                signed,
                key_id=peer.their_key_id,
                public_key=keys.public_key(peer.their_public_key),
                expected=expected,
            )
        except (receipts.ReceiptInvalid, keys.BadKey) as exc:
            raise EndpointError(f"the peer's receipt does not check out: {exc}") from None
        host = urlsplit(peer.base_url).hostname or "peer"
        receiver = peer.their_account or host
        return Delivered(
            uri=f"tradelane-peer://{host}/{peer.their_connection_uid}/{file.name}",
            answer=receipts.stored_answer(signed, receiver),
        )


def _patch(client: httpx.Client, url: str, path: Path, offset: int, size: int) -> httpx.Request:
    """A PATCH whose body is the kept file from `offset` on, read 1 MiB at a time as it is sent."""

    def body() -> Iterator[bytes]:
        with open(path, "rb") as f:
            f.seek(offset)
            left = size - offset
            while left > 0 and (chunk := f.read(min(READ_CHUNK, left))):
                left -= len(chunk)
                yield chunk

    return client.build_request(
        "PATCH",
        url,
        content=body(),
        headers={
            UPLOAD_OFFSET_HEADER: str(offset),
            "content-type": "application/offset+octet-stream",
            "content-length": str(size - offset),
        },
    )


def _send(client: httpx.Client, request: httpx.Request, signer: keys.OurKey) -> httpx.Response:
    sign_request(request, signer)
    try:
        response = client.send(request)
        response.read()
    except httpx.TransportError as exc:
        if isinstance(exc.__cause__, netpolicy.UrlNotAllowed) or isinstance(
            getattr(exc.__cause__, "__cause__", None), netpolicy.UrlNotAllowed
        ):
            raise ConfigError(f"the peer's address is not allowed: {exc}") from None
        raise PeerUnreachable(f"the peer instance cannot be reached: {type(exc).__name__}: {exc}") from None
    return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _short(data: object) -> str:
    return str(data)[:300]


def _answer(response: httpx.Response, doing: str) -> dict[str, Any]:
    """A 2xx answer's JSON; every other status as the endpoint error that says what to do next."""
    data = _json(response)
    if response.is_success:
        return data
    status = response.status_code
    said = str(data.get("message") or response.text[:300] or response.reason_phrase)
    text = f"the peer refused to {doing}: {status}: {said}"
    if status >= 500 or status == 429:
        raise PeerUnreachable(text)
    if status in (401, 403):
        raise AuthError(text)
    if status == 410:
        raise PermissionDenied(text)
    if status in (409, 422):
        raise TransientError(text)  # not active yet, another offset, bytes damaged on the way
    raise EndpointError(text)
