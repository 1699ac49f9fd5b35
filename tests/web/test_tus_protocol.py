"""The portal's resumable uploads (api/web/tus.py) spoken as tus-js-client speaks them, over real HTTP:
creation, offsets, resumes that never truncate, completion through intake exactly once, cancel."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from api.web import tus
from core import intake, web_uploads
from core.db import session_scope
from core.errors import StatusError
from core.mailbox import staging
from core.models import AuditEvent, Receipt, WebUpload, WebUploadState, utcnow
from tests.web.portal_client import TUS, Portal, new_partner, receipts_of, upload_row
from tests.web.server import WebServer, web_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    env = {"TRADELANE_FORWARDED_ALLOW_IPS": "127.0.0.1", "TRADELANE_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024)}
    with web_server(tmp_path_factory.mktemp("web-tus"), env) as running:
        yield running


@pytest.fixture
def portal(server: WebServer) -> Iterator[Portal]:
    with Portal(server, new_partner()) as logged_in:
        yield logged_in


def test_options_says_what_the_server_speaks(portal: Portal) -> None:
    answer = portal.client.options("/portal/uploads")
    assert answer.status_code == 204
    assert answer.headers["tus-version"] == "1.0.0" and answer.headers["tus-resumable"] == "1.0.0"
    assert answer.headers["tus-extension"] == "creation,termination,expiration"
    assert answer.headers["tus-max-size"] == str(64 * 1024 * 1024)


def test_an_upload_in_three_parts_is_taken_in_once_with_its_sha256(portal: Portal) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    created = portal.create("po_850.json", len(data))
    assert created.status_code == 201 and created.headers["upload-expires"].endswith("GMT")
    url = created.headers["location"]
    assert url.startswith("/portal/uploads/") and len(url.rsplit("/", 1)[1]) == 32
    assert portal.head(url).headers["upload-offset"] == "0"
    cuts = [0, 1024 * 1024, 2 * 1024 * 1024 + 5, len(data)]
    for start, end in itertools.pairwise(cuts):
        answer = portal.patch(url, start, data[start:end])
        assert answer.status_code == 204, answer.text
        assert answer.headers["upload-offset"] == str(end)
        head = portal.head(url)
        assert head.headers["upload-offset"] == str(end) and head.headers["upload-length"] == str(len(data))
        assert head.headers["cache-control"] == "no-store"
    [receipt] = receipts_of(portal.name)
    assert receipt.name == "po_850.json" and receipt.size == len(data)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest() and receipt.protocol == "portal"
    row = upload_row(url)
    assert row.state == WebUploadState.done and row.receipt_id == receipt.id
    assert row.patches == 3 and row.received == len(data)
    # A late retry of the last PATCH finds the upload complete: no second intake.
    again = portal.patch(url, len(data), b"")
    assert again.status_code == 204 and again.headers["upload-offset"] == str(len(data))
    assert len(receipts_of(portal.name)) == 1


def test_a_stale_offset_gets_409_and_truncates_nothing(portal: Portal) -> None:
    data = os.urandom(200_000)
    url = portal.new_upload("stale.bin", len(data))
    assert portal.patch(url, 0, data[:150_000]).status_code == 204
    # A browser re-sending its first request from offset 0 (as Chromium does on a dead connection):
    stale = portal.patch(url, 0, data[:150_000])
    assert stale.status_code == 409 and stale.headers["upload-offset"] == "150000"
    assert portal.patch(url, 10, data[10:20]).status_code == 409
    assert portal.head(url).headers["upload-offset"] == "150000"
    assert portal.patch(url, 150_000, data[150_000:]).status_code == 204
    [receipt] = receipts_of(portal.name)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert upload_row(url).received == len(data)  # the refused requests wrote nothing


def test_a_body_past_the_length_is_refused_and_the_upload_goes_on(portal: Portal) -> None:
    url = portal.new_upload("short.txt", 10)
    over = portal.patch(url, 0, b"0123456789ABC")
    assert over.status_code == 400 and "Upload-Length" in over.json()["message"]
    offset = int(portal.head(url).headers["upload-offset"])
    assert offset == 0
    assert portal.patch(url, 0, b"0123456789").status_code == 204
    assert [r.size for r in receipts_of(portal.name)] == [10]


def test_an_empty_file_is_taken_in_at_creation(portal: Portal) -> None:
    answer = portal.create("empty.csv", 0)
    assert answer.status_code == 201 and answer.headers["upload-offset"] == "0"
    [receipt] = receipts_of(portal.name)
    assert receipt.name == "empty.csv" and receipt.size == 0
    assert portal.head(answer.headers["location"]).headers["upload-offset"] == "0"


def test_cancel_leaves_nothing_staged_nor_received(server: WebServer, portal: Portal) -> None:
    url = portal.new_upload("gone.bin", 1000)
    assert portal.patch(url, 0, b"x" * 400).status_code == 204
    assert portal.delete(url).status_code == 204
    assert portal.head(url).status_code == 404
    assert receipts_of(portal.name) == []
    assert not list((server.home).rglob("gone.bin"))
    with session_scope() as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "upload.discarded")).all()
        assert any(e.actor == f"partner:{portal.name}" for e in events)


def test_a_new_upload_of_the_same_name_waits_for_the_live_one(portal: Portal) -> None:
    first = portal.new_upload("twice.txt", 5)
    assert portal.patch(first, 0, b"ab").status_code == 204
    second = portal.create("twice.txt", 5)
    assert second.status_code == 409 and "already being uploaded" in second.json()["message"]
    assert portal.patch(first, 2, b"cde").status_code == 204
    # Once done, the same name may be sent again (a new version of the file).
    again = portal.new_upload("twice.txt", 3)
    assert portal.patch(again, 0, b"xyz").status_code == 204
    assert [r.size for r in receipts_of(portal.name)] == [5, 3]


def test_protocol_refusals(portal: Portal) -> None:
    url = portal.new_upload("refusals.bin", 4)
    no_version = portal.client.head(url, headers={"X-CSRF-Token": portal.csrf})
    assert no_version.status_code == 412 and no_version.headers["tus-version"] == "1.0.0"
    wrong_type = portal.patch(url, 0, b"abcd", **{"Content-Type": "application/octet-stream"})
    assert wrong_type.status_code == 415
    assert portal.patch(url, 0, b"ab", **{"Upload-Offset": "-1"}).status_code == 400
    no_length = portal.client.post(
        "/portal/uploads", headers=portal.headers(**{"Upload-Metadata": "filename YS50eHQ="})
    )
    assert no_length.status_code == 400 and "Upload-Length" in no_length.json()["message"]
    no_name = portal.client.post("/portal/uploads", headers=portal.headers(**{"Upload-Length": "3"}))
    assert no_name.status_code == 400
    assert no_name.headers["tus-resumable"] == TUS["Tus-Resumable"]


def test_the_newest_patch_takes_over_from_a_silent_one(server: WebServer, portal: Portal) -> None:
    data = os.urandom(3000)
    url = portal.new_upload("silent.bin", len(data))
    # A PATCH whose connection stays open and says nothing more (a laptop that left the Wi-Fi).
    cookies = "; ".join(f"{k}={v}" for k, v in portal.client.cookies.items())
    head = (
        f"PATCH {url} HTTP/1.1\r\nHost: {server.url.removeprefix('http://')}\r\nCookie: {cookies}\r\n"
        f"Origin: {server.url}\r\nX-CSRF-Token: {portal.csrf}\r\nX-Forwarded-For: 198.51.100.250\r\n"
        "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as silent:
        silent.sendall(head.encode() + data[:1000])
        deadline = time.monotonic() + 15
        while url.rsplit("/", 1)[1] not in tus._running:  # the silent PATCH holds the upload
            assert time.monotonic() < deadline, "the silent PATCH never began"
            time.sleep(0.01)
        # The browser's retry: it takes over at once (not 423 until the body timeout); the silent
        # request's 1000 bytes were written, so the stale offset 0 is told where to go on.
        retry = portal.patch(url, 0, data)
        assert retry.status_code == 409, retry.text
        assert retry.headers["upload-offset"] == "1000"
        assert portal.patch(url, 1000, data[1000:]).status_code == 204
    [receipt] = receipts_of(portal.name)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest() and receipt.size == len(data)
    assert upload_row(url).received == len(data)


def test_an_expired_upload_is_gone(portal: Portal) -> None:
    url = portal.new_upload("stale-day.bin", 10)
    assert portal.patch(url, 0, b"12345").status_code == 204
    with session_scope() as session:  # a day later (the staging's retention)
        row = session.get(WebUpload, url.rsplit("/", 1)[1])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
    assert portal.head(url).status_code == 410
    gone = portal.patch(url, 5, b"67890")
    assert gone.status_code == 410 and "expired" in gone.json()["message"]
    assert receipts_of(portal.name) == []


class HeldBeforeDone:
    """Holds the completing PATCH between intake's receipt (the staged file is gone) and the row's
    `done` (web_uploads.finish) until `until()` says the racing request is there: the window a
    loaded machine opens by itself. The real `finish` runs after."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, until: Callable[[], bool]) -> None:
        self.entered = threading.Event()
        self.completing: tus._Running | None = None
        real = web_uploads.finish

        def held(session: Session, upload_id: str, receipt_id: int | None) -> None:
            self.completing = tus._running.get(upload_id)
            self.entered.set()
            deadline = time.monotonic() + 15
            while not until() and time.monotonic() < deadline:
                time.sleep(0.01)
            real(session, upload_id, receipt_id)

        monkeypatch.setattr(web_uploads, "finish", held)


def _waiting_on_the_upload(upload_id: str) -> bool:
    """A request waits for the completing PATCH (the upload's lock has a second user)."""
    locks: dict[str, tuple[object, int]] = getattr(tus, "_locks", {})
    return locks.get(upload_id, (None, 0))[1] > 1


def test_a_patch_taking_over_from_a_completing_one_takes_nothing_in_twice(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(300_000)
    url = portal.new_upload("twice.bin", len(data))
    upload_id = url.rsplit("/", 1)[1]
    hold: HeldBeforeDone
    hold = HeldBeforeDone(monkeypatch, lambda: tus._running.get(upload_id) not in (None, hold.completing))
    with ThreadPoolExecutor(1) as pool:
        completing = pool.submit(portal.patch, url, 0, data)
        assert hold.entered.wait(15), "the completing PATCH never reached intake"
        # A retry of the same request (tus-js-client's, a re-sent one) read the row as open; it
        # takes over while the first is between the receipt and the row's done.
        retry = portal.patch(url, 0, data)
        assert completing.result(15).status_code == 204
    assert retry.status_code == 409 and retry.headers["upload-offset"] == str(len(data)), retry.text
    [receipt] = receipts_of(portal.name)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert upload_row(url).state == WebUploadState.done


def test_head_during_completion_never_answers_offset_zero(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(200_000)
    url = portal.new_upload("gap.bin", len(data))
    upload_id = url.rsplit("/", 1)[1]
    answered = threading.Event()
    hold = HeldBeforeDone(monkeypatch, lambda: answered.is_set() or _waiting_on_the_upload(upload_id))
    with ThreadPoolExecutor(1) as pool:
        completing = pool.submit(portal.patch, url, 0, data)
        assert hold.entered.wait(15), "the completing PATCH never reached intake"
        head = portal.head(url)  # a resuming browser asks where to go on
        answered.set()
        assert completing.result(15).status_code == 204
    assert head.headers["upload-offset"] == str(len(data))
    assert len(receipts_of(portal.name)) == 1


def _running_other_than(upload_id: str, first: tus._Running | None) -> bool:
    """A newer PATCH of the upload has taken over (and cancelled `first`)."""
    return tus._running.get(upload_id) not in (None, first)


def test_a_patch_taken_over_after_its_last_bytes_still_takes_the_file_in(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(300_000)  # one batch: its write is the PATCH's last
    url = portal.new_upload("last-write.bin", len(data))
    upload_id = url.rsplit("/", 1)[1]
    writing = threading.Event()
    real = tus._write

    def held(handle: tus.StagedUpload, chunk: bytes) -> None:
        """The first PATCH's last write waits (as on a loaded machine) until a retry takes over."""
        if not writing.is_set():
            first = tus._running.get(upload_id)
            writing.set()
            deadline = time.monotonic() + 15
            while not _running_other_than(upload_id, first) and time.monotonic() < deadline:
                time.sleep(0.01)
        real(handle, chunk)

    monkeypatch.setattr(tus, "_write", held)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(portal.patch, url, 0, data)
        assert writing.wait(15), "the first PATCH never wrote"
        retry = portal.patch(url, 0, data)  # the browser's retry of the same request
        first.result(15)
    # The file was whole when the retry cancelled the first PATCH: it is taken in, once, and the
    # retry is told the upload is complete; never "whole" on HEAD with nothing received.
    assert retry.status_code == 409 and retry.headers["upload-offset"] == str(len(data)), retry.text
    [receipt] = receipts_of(portal.name)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert upload_row(url).state == WebUploadState.done
    assert portal.head(url).headers["upload-offset"] == str(len(data))
    assert not [path for path in staging._active if path.name == "last-write.bin"]  # nothing left open


def test_a_cut_patch_holding_the_rest_of_the_file_takes_it_in(server: WebServer, portal: Portal) -> None:
    data = os.urandom(3000)
    url = portal.new_upload("whole-in-hand.bin", len(data))
    upload_id = url.rsplit("/", 1)[1]
    # A PATCH that has sent every byte of the file and still says more is to come; a retry takes
    # over: the bytes in hand are written, and make the file whole.
    with portal.silent_patch(server.url, url, len(data) + 1, data):
        deadline = time.monotonic() + 15
        while upload_id not in tus._running:
            assert time.monotonic() < deadline, "the silent PATCH never began"
            time.sleep(0.01)
        retry = portal.patch(url, 0, data)
    assert retry.status_code == 409 and retry.headers["upload-offset"] == str(len(data)), retry.text
    [receipt] = receipts_of(portal.name)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest() and receipt.size == len(data)
    assert upload_row(url).state == WebUploadState.done


def test_a_whole_file_whose_intake_failed_is_taken_in_before_head_says_it_is_whole(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(5000)
    url = portal.new_upload("intake-again.bin", len(data))
    real = intake.receive_staged
    failed: list[str] = []

    class Busy(StatusError):
        status = 503

    def fails_once(*args: Any, **kwargs: Any) -> Receipt:
        if not failed:
            failed.append("once")
            raise Busy("the database is busy")  # a passing failure, before the move
        return real(*args, **kwargs)

    monkeypatch.setattr(intake, "receive_staged", fails_once)
    answer = portal.patch(url, 0, data)
    assert answer.status_code == 503 and receipts_of(portal.name) == []
    # tus-js-client retries with HEAD, and takes "Upload-Offset == Upload-Length" for done (it sends
    # nothing more): so the file is taken in before HEAD says so, not left staged, never delivered.
    head = portal.head(url)
    assert head.status_code == 200 and head.headers["upload-offset"] == str(len(data))
    [receipt] = receipts_of(portal.name)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert upload_row(url).state == WebUploadState.done and upload_row(url).receipt_id == receipt.id
    assert len(receipts_of(portal.name)) == 1 and portal.head(url).headers["upload-offset"] == str(len(data))


def _resume_as_tus_js_client_does(portal: Portal, url: str, data: bytes) -> None:
    """After a failed PATCH tus-js-client asks HEAD where to go on; offset == length is done (it
    sends nothing more), else it sends the rest from that offset."""
    head = portal.head(url)
    assert head.status_code == 200, head.text
    offset = int(head.headers["upload-offset"])
    if offset < len(data):
        assert portal.patch(url, offset, data[offset:]).status_code == 204


def test_a_crash_right_after_the_receipts_commit_leaves_the_upload_done(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(40_000)
    url = portal.new_upload("crash-after-commit.bin", len(data))
    real = intake._wake
    crashed: list[str] = []

    def dies_once(receipt: Receipt) -> None:
        """The process stops right after the receipt's commit (SIGKILL, as near as one process gets)."""
        if not crashed:
            crashed.append("once")
            raise RuntimeError("killed after the receipt's commit")
        real(receipt)

    monkeypatch.setattr(intake, "_wake", dies_once)
    portal.patch(url, 0, data)  # (after a real crash the browser gets no answer at all)
    assert crashed
    # The row was marked done in the receipt's transaction: HEAD says complete, not offset 0 (which
    # would make the browser send the whole file again and have it delivered twice).
    head = portal.head(url)
    assert head.status_code == 200 and head.headers["upload-offset"] == str(len(data)), head.headers
    _resume_as_tus_js_client_does(portal, url, data)
    [receipt] = receipts_of(portal.name)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert upload_row(url).state == WebUploadState.done and upload_row(url).receipt_id == receipt.id


def test_a_failed_done_takes_the_receipt_back_with_it(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(30_000)
    url = portal.new_upload("done-fails.bin", len(data))
    real = web_uploads.finish
    failed: list[str] = []

    class Busy(StatusError):
        status = 503

    def fails_once(session: Session, upload_id: str, receipt_id: int | None) -> None:
        if not failed:
            failed.append("once")
            raise Busy("the row's update failed")
        real(session, upload_id, receipt_id)

    monkeypatch.setattr(web_uploads, "finish", fails_once)
    answer = portal.patch(url, 0, data)
    assert failed and answer.status_code == 503
    # Neither the receipt nor the row's done committed, and the bytes went back to staging: HEAD
    # takes the file in (nothing is sent again), once; nothing is lost, nothing delivered twice.
    assert receipts_of(portal.name) == []
    head = portal.head(url)
    assert head.status_code == 200 and head.headers["upload-offset"] == str(len(data)), head.headers
    [receipt] = receipts_of(portal.name)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert upload_row(url).state == WebUploadState.done and upload_row(url).receipt_id == receipt.id
    assert portal.head(url).headers["upload-offset"] == str(len(data))


def test_two_processes_completing_one_upload_take_it_in_once(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `serve api` processes behind one load balancer share the store, not the upload's lock:
    one takes the file in while the browser, told offset 0 by the other, sends it all again there.
    The second intake reaches the store before the first's commit; its receipt rolls back."""
    data = os.urandom(50_000)
    url = portal.new_upload("two-processes.bin", len(data))
    monkeypatch.setattr(tus, "_upload_lock", lambda upload_id: contextlib.nullcontext())  # two processes
    second_intake = threading.Event()
    real_record, real_finish = intake.record_receipt, web_uploads.finish
    records: list[str] = []

    def record(*args: Any, **kwargs: Any) -> Receipt:
        records.append("receipt")
        if len(records) == 2:
            second_intake.set()
        return real_record(*args, **kwargs)

    def finish_when_the_second_is_there(session: Session, upload_id: str, receipt_id: int | None) -> None:
        if not second_intake.is_set():
            second_intake.wait(15)
        real_finish(session, upload_id, receipt_id)

    monkeypatch.setattr(intake, "record_receipt", record)
    monkeypatch.setattr(web_uploads, "finish", finish_when_the_second_is_there)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(portal.patch, url, 0, data)
        deadline = time.monotonic() + 15
        while not records:
            assert time.monotonic() < deadline, "the first PATCH never reached intake"
            time.sleep(0.01)
        # The other process: the row still open, nothing staged (the file is in the store).
        head = portal.head(url)
        assert head.headers["upload-offset"] == "0"
        again = portal.patch(url, 0, data)
        assert first.result(30).status_code == 204
    assert second_intake.is_set() and again.status_code in (204, 409), again.text
    assert again.headers["upload-offset"] == str(len(data))
    [receipt] = receipts_of(portal.name)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert upload_row(url).state == WebUploadState.done and upload_row(url).receipt_id == receipt.id
    assert portal.head(url).headers["upload-offset"] == str(len(data))


def test_a_copy_sent_to_another_process_is_dropped_once_the_first_took_the_upload_in(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The browser, told offset 0 by the process that did not take the file in, sends it all again
    there; the first process commits meanwhile: the copy never reaches intake (no second move into
    the store, no second link in the partner's folder) and the browser is told the upload is done."""
    data = os.urandom(60_000)
    url = portal.new_upload("sent-twice.bin", len(data))
    monkeypatch.setattr(tus, "_upload_lock", lambda upload_id: contextlib.nullcontext())  # two processes
    copy_arriving, first_done = threading.Event(), threading.Event()
    real_write, real_finish, real_record = tus._write, web_uploads.finish, intake.record_receipt
    records: list[str] = []

    def record(*args: Any, **kwargs: Any) -> Receipt:
        records.append("receipt")
        return real_record(*args, **kwargs)

    def finish_once_the_copy_arrives(session: Session, upload_id: str, receipt_id: int | None) -> None:
        copy_arriving.wait(15)
        real_finish(session, upload_id, receipt_id)

    def write_after_the_first_is_done(handle: tus.StagedUpload, chunk: bytes) -> None:
        if records:  # the second PATCH: its body arrives while the first commits
            copy_arriving.set()
            deadline = time.monotonic() + 15
            while upload_row(url).state != WebUploadState.done and time.monotonic() < deadline:
                time.sleep(0.01)
            first_done.set()
        real_write(handle, chunk)

    monkeypatch.setattr(intake, "record_receipt", record)
    monkeypatch.setattr(web_uploads, "finish", finish_once_the_copy_arrives)
    monkeypatch.setattr(tus, "_write", write_after_the_first_is_done)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(portal.patch, url, 0, data)
        deadline = time.monotonic() + 15
        while not records:
            assert time.monotonic() < deadline, "the first PATCH never reached intake"
            time.sleep(0.01)
        assert portal.head(url).headers["upload-offset"] == "0"  # nothing staged, the row open
        again = portal.patch(url, 0, data)
        assert first.result(30).status_code == 204
    assert first_done.is_set() and again.status_code == 204
    assert again.headers["upload-offset"] == str(len(data))
    assert records == ["receipt"]  # the copy never went to intake
    [receipt] = receipts_of(portal.name)
    assert upload_row(url).receipt_id == receipt.id
    assert not [path for path in staging._active if path.name == "sent-twice.bin"]
    assert portal.head(url).headers["upload-offset"] == str(len(data))
