"""Receipts' kept bytes in the storage, a local folder or an S3 bucket (`TRADELANE_STORAGE_URL=
s3://bucket/prefix` on the moto server): written by intake, read back by the delivery steps with
their SHA-256 checked, and read again by a replay. The same tests run on both storages."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from sqlmodel import select

from core import delivery, partners, receipt_files, transfers
from core.config import get_settings
from core.db import session_scope
from core.delivery import ChecksumMismatch, Outcome
from core.intake import begin, receive_stream
from core.models import Receipt, Transfer, TransferState
from core.validators import ValidationError
from tests.storage.conftest import PREFIX, Store
from tests.tenancy import home_scope

MIB = 1024 * 1024


def receive(name: str, data: bytes) -> int:
    """Take a file in as acme's upload; the id of its transfer."""
    with session_scope() as session:
        partner = partners.require(session, home_scope(session), "acme")
    receipt = receive_stream(partner, "upload", name, io.BytesIO(data), protocol="rest")
    return transfers_of(receipt)


def carry(transfer_ids: list[int]) -> list[TransferState]:
    jobs = delivery.start_run(transfer_ids, None).jobs
    delivery.count_attempts([job.transfer_id for job in jobs])
    return delivery.record_outcomes([Outcome.delivered(job, delivery.push(job)) for job in jobs])


def receipt_of(transfer_id: int) -> Receipt:
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        receipt = session.get(Receipt, transfer.receipt_id)
        assert receipt is not None
        return receipt


def transfers_of(receipt: Receipt) -> int:
    """The receipt's first transfer (acme-out's)."""
    with session_scope() as session:
        query = select(Transfer).where(Transfer.receipt_id == receipt.id).order_by(Transfer.id)  # type: ignore[arg-type]
        transfer = session.exec(query).first()
        assert transfer is not None and transfer.id is not None
        return transfer.id


def kept_bytes(store: Store, receipt: Receipt) -> bytes:
    if store.bucket is None:
        return (get_settings().mailbox_root / receipt.storage_path).read_bytes()
    answer = store.s3.get_object(Bucket=store.bucket, Key=f"{PREFIX}/{receipt.storage_path}")
    data: bytes = answer["Body"].read()
    return data


def test_the_kept_bytes_are_written_to_the_storage_and_delivered_from_it(store: Store) -> None:
    # Larger than a part (8 MiB): on S3 a multipart upload, completed when the file is.
    big = bytes(range(256)) * (9 * MIB // 256)
    ids = [receive("po.json", b'{"po": 1}'), receive("big.bin", big)]
    receipts = [receipt_of(i) for i in ids]
    assert all(receipt_files.is_kept(r.storage_path) for r in receipts)
    assert [kept_bytes(store, r) for r in receipts] == [b'{"po": 1}', big]
    if store.bucket is not None:
        # The bytes are in the bucket, not on this machine: another role's worker reads the same.
        assert sorted(store.kept_keys()) == sorted(f"{PREFIX}/{r.storage_path}" for r in receipts)
        assert not (get_settings().mailbox_root / ".store").exists()
        assert store.multipart_uploads() == []
    assert carry(ids) == [TransferState.delivered] * 2
    assert (store.out / "po.json").read_bytes() == b'{"po": 1}'
    assert (store.out / "big.bin").read_bytes() == big
    # The kept bytes stay: they are the archive a replay reads.
    assert kept_bytes(store, receipts[1]) == big


def test_a_replay_reads_the_kept_bytes_again(store: Store) -> None:
    first = receive("invoice.edi", b"ISA*version one~")
    assert carry([first]) == [TransferState.delivered]
    (store.out / "invoice.edi").unlink()  # picked up at the destination
    with session_scope() as session:
        replayed = transfers.replay(session, home_scope(session), first)
        assert replayed.id is not None
        replay_id = replayed.id
    assert carry([replay_id]) == [TransferState.delivered]
    assert (store.out / "invoice.edi").read_bytes() == b"ISA*version one~"


def test_kept_bytes_that_changed_are_not_delivered(store: Store) -> None:
    transfer_id = receive("po.json", b'{"po": 2}')
    receipt = receipt_of(transfer_id)
    if store.bucket is None:
        (get_settings().mailbox_root / receipt.storage_path).write_bytes(b'{"po": 3}')
    else:
        store.s3.put_object(Bucket=store.bucket, Key=f"{PREFIX}/{receipt.storage_path}", Body=b'{"po": 3}')
    (job,) = delivery.start_run([transfer_id], None).jobs
    with pytest.raises(ChecksumMismatch):
        delivery.push(job)
    assert list(store.out.iterdir()) == []


def test_validators_stream_the_kept_bytes(store: Store) -> None:
    """The validate step reads the kept file from the storage and checks its SHA-256 as it goes."""
    transfer_id = receive("po.json", b'{"po": 4}')
    (job,) = delivery.start_run([transfer_id], None).jobs
    flow = job.flow.model_copy(update={"validators": [{"type": "json"}]})
    delivery.check(replace(job, flow=flow))  # no error: well-formed, and the bytes are the receipt's
    broken = receipt_of(receive("bad.json", b'{"po": '))
    (bad,) = delivery.start_run([transfers_of(broken)], None).jobs
    with pytest.raises(ValidationError):
        delivery.check(replace(bad, flow=flow))


def test_an_aborted_upload_leaves_nothing_in_the_storage(store: Store) -> None:
    with session_scope() as session:
        partner = partners.require(session, home_scope(session), "acme")
    upload = begin(partner, "upload", "half.bin", protocol="rest")
    upload.write(b"x" * (9 * MIB))  # past one part: on S3 a multipart upload is under way
    if store.bucket is not None:
        assert store.multipart_uploads() != []
    upload.abort()
    with session_scope() as session:
        assert session.exec(select(Receipt)).all() == []
    if store.bucket is None:
        assert list((get_settings().mailbox_root / ".store").rglob("*.*")) == []
    else:
        assert store.kept_keys() == [] and store.multipart_uploads() == []


def test_a_destination_that_needs_a_local_file_gets_a_checked_copy(store: Store) -> None:
    """A push to a peer instance resumes from an offset of a local file: a kept object is copied
    into the transfer's staging first, hashed on the way (`derived.local_copy`)."""
    from core import derived

    transfer_id = receive("po.json", b'{"po": 5}')
    (job,) = delivery.start_run([transfer_id], None).jobs
    assert (job.carried.stored is not None) == (store.bucket is not None)
    local = derived.local_copy(transfer_id, job.carried)
    assert local.path.read_bytes() == b'{"po": 5}' and local.stored is None
    receipt = receipt_of(transfer_id)
    if store.bucket is None:
        (get_settings().mailbox_root / receipt.storage_path).write_bytes(b'{"po": 6}')
    else:
        store.s3.put_object(Bucket=store.bucket, Key=f"{PREFIX}/{receipt.storage_path}", Body=b'{"po": 6}')
    with pytest.raises(derived.SourceChanged):
        derived.local_copy(transfer_id, job.carried)
    derived.discard(transfer_id)
    assert not derived.transfer_dir(transfer_id).exists()
