"""A push to S3 with its parts in flight keeps the push's guarantees (issue 17): the fence before
CompleteMultipartUpload (a run that lost its transfer mid-push writes nothing), the SHA-256 check
of what was read before it (a source that changed mid-push writes nothing), and either way no
multipart upload is left behind. Against a real moto server, on SQLite and PostgreSQL.

The step that takes the transfer (or changes the source) runs when the write stream hands its
first part to the upload threads, so parts are in flight while the rest is still being read."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlmodel import select

from core import dataflows, delivery, partners, transfers
from core.db import session_scope
from core.delivery import ChecksumMismatch, Outcome, TransferTaken
from core.endpoints import rows as endpoint_rows
from core.endpoints.s3 import S3WriteStream
from core.endpoints.s3_settings import MIN_PART_SIZE
from core.models import Transfer, TransferState
from tests.migration_store import store  # noqa: F401  (the fixture: a store on each database)
from tests.servers import moto_client
from tests.tenancy import home_scope
from tradelane.testing import receipt_from_bytes

BIG = 6 * MIN_PART_SIZE  # parts 2..6 are read while part 1 is on its way


@pytest.fixture
def bucket(store: None, moto_server: str) -> str:  # noqa: F811
    """acme's uploads carried to a bucket, in 5 MiB parts, four in flight."""
    name = f"fence-{uuid.uuid4().hex[:10]}"
    moto_client(moto_server).create_bucket(Bucket=name)
    with session_scope() as session:
        scope = home_scope(session)
        partners.add(session, scope, "acme", password="fence-Passw0rd-1")
        endpoint_rows.add(
            session,
            scope,
            "lake",
            "s3",
            {"bucket": name, "endpoint_url": moto_server, "part_size": MIN_PART_SIZE},
            {"access_key_id": "fence", "secret_access_key": "fence-secret"},
        )
        dataflows.add(session, scope, "acme-lake", source="mailbox:acme", dest="lake")
    return name


@pytest.fixture
def at_first_part(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Callable[[], None]]]:
    """Steps to run once, when a write stream sends its first part (the upload then exists)."""
    steps: list[Callable[[], None]] = []
    send = S3WriteStream._send_part

    def sending(self: S3WriteStream, part: bytearray) -> None:
        send(self, part)
        while steps:
            steps.pop(0)()

    monkeypatch.setattr(S3WriteStream, "_send_part", sending)
    yield steps
    assert steps == []  # every step ran: the push got as far as its first part


def received(name: str, body: bytes) -> int:
    receipt = receipt_from_bytes("acme", name, body)
    with session_scope() as session:
        transfer = session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id)).one()
        assert transfer.id is not None
        return transfer.id


def left_in(s3: Any, bucket: str) -> tuple[list[str], int]:
    """The objects in the bucket, and the multipart uploads still open there."""
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return keys, len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def test_a_run_that_lost_its_transfer_with_parts_in_flight_writes_nothing(
    bucket: str, moto_server: str, at_first_part: list[Callable[[], None]]
) -> None:
    s3 = moto_client(moto_server)
    body = os.urandom(BIG)
    transfer_id = received("big.bin", body)
    (slow,) = delivery.start_run([transfer_id], "run-1").jobs

    def taken() -> None:  # the dispatcher finds run-1 dead; run-2 takes the file
        with session_scope() as session:
            assert transfers.requeue(session, [transfer_id], "run-1 looked dead", from_run="run-1") == 1
        assert [job.transfer_id for job in delivery.start_run([transfer_id], "run-2").jobs] == [transfer_id]

    at_first_part.append(taken)
    with pytest.raises(TransferTaken, match="run run-1 no longer holds transfer") as lost:
        delivery.push(slow)
    assert left_in(s3, bucket) == ([], 0)  # aborted at the fence: no object, no upload open

    [note] = delivery.record([Outcome(slow, error=lost.value)])
    assert note.state == TransferState.running
    (job,) = delivery.start_run([transfer_id], "run-2").jobs
    assert delivery.record_outcomes([Outcome.delivered(job, delivery.push(job))]) == [TransferState.delivered]
    assert left_in(s3, bucket) == (["big.bin"], 0)
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == body


def test_a_source_changed_with_parts_in_flight_writes_nothing(
    bucket: str, moto_server: str, at_first_part: list[Callable[[], None]]
) -> None:
    s3 = moto_client(moto_server)
    transfer_id = received("changed.bin", os.urandom(BIG))
    (job,) = delivery.start_run([transfer_id], "run-1").jobs

    def change_the_tail() -> None:  # bytes not read yet: the hash of what is read then differs
        with job.carried.path.open("r+b") as kept:
            kept.seek(BIG - 1)
            last = kept.read(1)
            kept.seek(BIG - 1)
            kept.write(bytes([last[0] ^ 0xFF]))

    at_first_part.append(change_the_tail)
    with pytest.raises(ChecksumMismatch, match="changed since"):
        delivery.push(job)
    assert left_in(s3, bucket) == ([], 0)
