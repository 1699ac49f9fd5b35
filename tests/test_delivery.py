"""The Prefect-free steps of a transfer run over a batch: start, push, record, and what happens to
the partner's file: kept per receipt, taken out of upload/ once delivered (also by a replay), and
receipts of the layout before the store (bytes at the partner's path or in `.archive`)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from core import dataflows, delivery, partners, receipt_files, transfers
from core.config import get_settings
from core.db import init_db, session_scope
from core.delivery import Outcome
from core.endpoints import rows as endpoint_rows
from core.endpoints.base import NameTaken, TransientError
from core.intake import receive_stream
from core.models import Receipt, Transfer, TransferState
from core.validators import ValidationError
from tests.isolation import isolated_home
from tests.tenancy import home_scope


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    with isolated_home(tmp_path / "home"):
        init_db()
        with session_scope() as session:
            partners.add(session, home_scope(session), "acme", password="delivery-Pass-1")
            endpoint_rows.add(session, home_scope(session), "out", "file", {"path": str(tmp_path / "out")})
            dataflows.add(session, home_scope(session), "acme-out", source="mailbox:acme", dest="out")
        yield tmp_path


def upload_dir() -> Path:
    return get_settings().mailbox_root / "home" / "acme" / "upload"


def receive(name: str, data: bytes) -> int:
    """Take a file in as acme's REST upload; the id of its (first) transfer."""
    with session_scope() as session:
        partner = partners.require(session, home_scope(session), "acme")
    receipt = receive_stream(partner, "upload", name, io.BytesIO(data), protocol="rest")
    with session_scope() as session:
        query = select(Transfer).where(Transfer.receipt_id == receipt.id).order_by(Transfer.id)  # type: ignore[arg-type]
        transfer = session.exec(query).first()
        assert transfer is not None and transfer.id is not None
        return transfer.id


def carry(transfer_ids: list[int], run: str | None = None) -> list[TransferState]:
    """Carry the transfers as the flow run `run` (None: an in-process run, no Prefect id)."""
    jobs = delivery.start_run(transfer_ids, run).jobs
    delivery.count_attempts([job.transfer_id for job in jobs])
    return delivery.record_outcomes([Outcome.delivered(job, delivery.push(job)) for job in jobs])


def fail(transfer_id: int, run: str | None = None) -> None:
    (job,) = delivery.start_run([transfer_id], run).jobs
    delivery.record_outcomes([Outcome(job, error=TransientError("destination away"))])


def receipt_of(transfer_id: int) -> Receipt:
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        receipt = session.get(Receipt, transfer.receipt_id)
        assert receipt is not None
        return receipt


def test_a_batch_is_pushed_recorded_and_taken_out_of_upload(home: Path) -> None:
    ids = [receive(name, name.encode() * 100) for name in ("a.json", "b.json", "c.json")]
    jobs = delivery.start(ids)
    assert [j.receipt.name for j in jobs] == ["a.json", "b.json", "c.json"]
    delivery.count_attempts(ids)
    outcomes = [Outcome.delivered(job, delivery.push(job)) for job in jobs]
    assert delivery.record_outcomes(outcomes) == [TransferState.delivered] * 3
    for name in ("a.json", "b.json", "c.json"):
        assert (home / "out" / name).read_bytes() == name.encode() * 100
    assert list(upload_dir().iterdir()) == []
    with session_scope() as session:
        for receipt in session.exec(select(Receipt)).all():
            # The kept file is the archive: still there, with the receipt's own bytes.
            assert receipt_files.is_kept(receipt.storage_path)
            kept = get_settings().mailbox_root / receipt.storage_path
            assert kept.read_bytes() == receipt.name.encode() * 100
        rows = session.exec(select(Transfer)).all()
        assert all(r.attempts == 1 and r.state == TransferState.delivered for r in rows)
    # A batch run again (after a crash) carries only what is left: nothing.
    assert delivery.start(ids) == []


def test_the_partner_sees_a_link_to_the_kept_bytes_not_a_copy(home: Path) -> None:
    transfer_id = receive("po.json", b"{}")
    receipt = receipt_of(transfer_id)
    visible = upload_dir() / "po.json"
    kept = get_settings().mailbox_root / receipt.storage_path
    assert receipt.visible_path == "home/acme/upload/po.json"
    assert os.path.samestat(os.stat(visible), os.stat(kept))
    # Nothing of the name is in the kept file's path: no name is too long to keep.
    assert "po" not in receipt.storage_path


def test_a_second_upload_of_the_same_name_never_touches_the_first(home: Path) -> None:
    """Issue 10 item 6: v1 acknowledged, v2 replaced it before it was carried; v1 was lost."""
    first = receive("invoice_812.edi", b"version one")
    second = receive("invoice_812.edi", b"version two, longer")
    # The partner sees the newest; each receipt still has its own bytes.
    assert (upload_dir() / "invoice_812.edi").read_bytes() == b"version two, longer"
    assert carry([first]) == [TransferState.delivered]
    delivered = home / "out" / "invoice_812.edi"
    assert delivered.read_bytes() == b"version one"
    # v1 delivered: v2's link stays in upload/ (another inode) until v2 is delivered too.
    assert (upload_dir() / "invoice_812.edi").read_bytes() == b"version two, longer"
    assert carry([second]) == [TransferState.delivered]
    assert list(upload_dir().iterdir()) == []
    # And v1 can still be replayed from its own bytes.
    with session_scope() as session:
        replayed = transfers.replay(session, home_scope(session), first)
        assert replayed.id is not None
        replay_id = replayed.id
    (job,) = delivery.start([replay_id])
    with job.open_source() as root, root.open_read(job.source_path) as stream:
        assert stream.read() == b"version one"


def test_a_delivered_replay_takes_the_file_out_of_upload(home: Path) -> None:
    """Issue 10 item 4: a replayed transfer that is delivered archives the source like a first one."""
    transfer_id = receive("po.json", b"{}")
    fail(transfer_id)
    assert (upload_dir() / "po.json").exists()  # failed: the partner's file stays
    with session_scope() as session:
        replay = transfers.replay(session, home_scope(session), transfer_id)
        assert replay.id is not None
        replay_id = replay.id
    assert carry([replay_id]) == [TransferState.delivered]
    assert not (upload_dir() / "po.json").exists()
    assert (home / "out" / "po.json").read_bytes() == b"{}"


def test_a_file_leaves_upload_only_when_every_data_flow_delivered_it(home: Path) -> None:
    with session_scope() as session:
        endpoint_rows.add(session, home_scope(session), "other", "file", {"path": str(home / "other")})
        dataflows.add(session, home_scope(session), "acme-other", source="mailbox:acme", dest="other")
    receipt = receipt_of(receive("po.json", b"{}"))
    with session_scope() as session:
        by_flow = {
            t.data_flow_id: t.id
            for t in session.exec(select(Transfer).where(Transfer.receipt_id == receipt.id))
            if t.id is not None
        }
    first, second = sorted(by_flow.values())
    carry([first])
    fail(second)
    assert (upload_dir() / "po.json").exists()
    with session_scope() as session:
        replay = transfers.replay(session, home_scope(session), second)
        assert replay.id is not None
        replay_id = replay.id
    carry([replay_id])
    assert not (upload_dir() / "po.json").exists()


def test_a_255_byte_name_is_delivered_and_taken_out_of_upload(home: Path) -> None:
    """Issue 10 item 16: names of ~252 bytes or more could not be archived (ENAMETOOLONG)."""
    name = "é" * 125 + "x.edi"  # 250 + 5 = 255 bytes
    assert len(name.encode()) == 255
    transfer_id = receive(name, b"ISA*00~")
    assert carry([transfer_id]) == [TransferState.delivered]
    assert list(upload_dir().iterdir()) == []
    assert (home / "out" / name).read_bytes() == b"ISA*00~"
    kept = get_settings().mailbox_root / receipt_of(transfer_id).storage_path
    assert kept.read_bytes() == b"ISA*00~"


def test_keep_delivered_uploads_leaves_the_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "keep_delivered_uploads", True)
    transfer_id = receive("po.json", b"{}")
    assert carry([transfer_id]) == [TransferState.delivered]
    assert (upload_dir() / "po.json").read_bytes() == b"{}"


# --- receipts written before the store (storage_path = the partner's path, or the old archive) ---


def legacy_receipt(name: str, data: bytes) -> int:
    """A receipt as tradelane wrote it before: bytes at the partner's path, no kept file."""
    transfer_id = receive(name, data)
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        receipt = session.get(Receipt, transfer.receipt_id)
        assert receipt is not None
        kept = get_settings().mailbox_root / receipt.storage_path
        visible = upload_dir() / name
        visible.unlink()
        os.rename(kept, visible)
        receipt.storage_path = f"home/acme/upload/{name}"
        receipt.visible_path = None
        session.add(receipt)
    return transfer_id


def test_an_old_layout_receipt_is_delivered_then_kept_for_replays(home: Path) -> None:
    transfer_id = legacy_receipt("old.json", b"old bytes")
    assert carry([transfer_id]) == [TransferState.delivered]
    assert (home / "out" / "old.json").read_bytes() == b"old bytes"
    assert not (upload_dir() / "old.json").exists()
    receipt = receipt_of(transfer_id)
    assert receipt.storage_path == receipt_files.legacy_kept_path(receipt)
    (home / "out" / "old.json").unlink()
    with session_scope() as session:
        replay = transfers.replay(session, home_scope(session), transfer_id)
        assert replay.id is not None
        replay_id = replay.id
    assert carry([replay_id]) == [TransferState.delivered]
    assert (home / "out" / "old.json").read_bytes() == b"old bytes"


def test_an_old_layout_receipt_moved_by_a_killed_run_is_found_again(home: Path) -> None:
    """SIGKILL after the move into the store but before the commit: the row names upload/."""
    transfer_id = legacy_receipt("po.json", b"po bytes")
    (job,) = delivery.start([transfer_id])
    moved = receipt_files.hide(job.receipt)  # what the killed run had done; never committed
    assert moved == receipt_files.legacy_kept_path(job.receipt)
    assert not (upload_dir() / "po.json").exists()
    (again,) = delivery.start([transfer_id])
    assert again.source_path == moved
    outcome = Outcome.delivered(again, delivery.push(again))
    assert delivery.record_outcomes([outcome]) == [TransferState.delivered]
    assert (home / "out" / "po.json").read_bytes() == b"po bytes"
    assert receipt_of(transfer_id).storage_path == moved


def test_an_old_archived_receipt_is_replayed_from_the_old_archive(home: Path) -> None:
    transfer_id = legacy_receipt("arch.json", b"archived bytes")
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        receipt = session.get(Receipt, transfer.receipt_id)
        assert receipt is not None
        archived = receipt_files.legacy_archive_path(receipt)
        (get_settings().mailbox_root / archived).parent.mkdir(parents=True)
        os.rename(upload_dir() / "arch.json", get_settings().mailbox_root / archived)
        receipt.storage_path = archived
        session.add(receipt)
        transfers.finish(session, transfer, TransferState.delivered)
        replay = transfers.replay(session, home_scope(session), transfer_id)
        assert replay.id is not None
        replay_id = replay.id
    assert carry([replay_id]) == [TransferState.delivered]
    assert (home / "out" / "arch.json").read_bytes() == b"archived bytes"
    assert receipt_of(replay_id).storage_path == archived


# --- a run started again (Prefect's Retry button) ----------------------------------------------


def launched(transfer_id: int, flow_run_id: str) -> None:
    with session_scope() as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        transfer.flow_run_id = flow_run_id
        session.add(transfer)


def test_a_run_started_again_carries_its_failed_files_as_replays(home: Path) -> None:
    """Issue 10 item 5: Retry used to end `Completed: nothing left to carry` with the file failed."""
    failed, delivered, rejected = (receive(n, b"{}") for n in ("f.json", "d.json", "r.json"))
    for transfer_id in (failed, delivered, rejected):
        launched(transfer_id, "run-1")
    carry([delivered], "run-1")
    fail(failed, "run-1")
    (job,) = delivery.start_run([rejected], "run-1").jobs
    delivery.record_outcomes([Outcome(job, error=ValidationError("json", "not JSON"))])

    again = delivery.start_run([failed, delivered, rejected], "run-1")
    assert again.again == 1
    (replay,) = again.jobs
    assert replay.transfer_id not in (failed, delivered, rejected) and replay.tried_before
    assert {(left.name, left.state) for left in again.left} == {
        ("d.json", "delivered"),
        ("r.json", "rejected"),
    }
    with session_scope() as session:
        row = session.get(Transfer, replay.transfer_id)
        assert row is not None
        assert (row.replay_of, row.flow_run_id, row.state) == (failed, "run-1", TransferState.running)
    outcome = Outcome.delivered(replay, delivery.push(replay))
    assert delivery.record_outcomes([outcome]) == [TransferState.delivered]
    assert (home / "out" / "f.json").read_bytes() == b"{}"
    # Run again once more: nothing failed is left; each file says what became of it.
    final = delivery.start_run([failed, delivered, rejected], "run-1")
    assert final.jobs == [] and final.again == 0
    states = {left.name: left for left in final.left}
    assert states["f.json"].state == "delivered" and states["f.json"].latest_id == replay.transfer_id
    assert "rejected" in states["r.json"].describe() and "corrected" in states["r.json"].describe()


def test_a_failed_file_another_run_owns_is_left_with_the_replay_command(home: Path) -> None:
    transfer_id = receive("po.json", b"{}")
    launched(transfer_id, "run-1")
    fail(transfer_id, "run-1")
    other = delivery.start_run([transfer_id], "run-2")
    assert other.jobs == []
    (left,) = other.left
    assert left.state == "failed" and f"tradelane replay {transfer_id}" in left.describe()


# --- exactly once under a conflict policy -------------------------------------------------------


def test_a_run_killed_after_writing_does_not_leave_a_numbered_copy(home: Path) -> None:
    """The file was written, then the run died before recording it: the next run finds it there."""
    transfer_id = receive("po.json", b'{"po": 1}')
    (job,) = delivery.start([transfer_id])
    delivery.count_attempts([transfer_id])
    delivery.push(job)  # written; the outcome is never recorded (SIGKILL)
    (again,) = delivery.start([transfer_id])
    assert again.tried_before
    delivered = delivery.push(again)
    assert delivered.uri.endswith("/out/po.json")
    assert delivered.answer == {"summary": "already there with the same SHA-256; not written again"}
    assert os.listdir(home / "out") == ["po.json"]


def test_a_retry_finds_its_file_under_the_numbered_name_it_took(home: Path) -> None:
    (home / "out").mkdir()
    (home / "out" / "po.json").write_bytes(b"someone else's po.json")
    transfer_id = receive("po.json", b'{"po": 2}')
    (job,) = delivery.start([transfer_id])
    first = delivery.push(job)
    assert first.uri.endswith("/out/po%20%282%29.json")
    assert delivery.push(job, again=True).uri == first.uri  # the flow's `push … (try 2)`
    assert sorted(os.listdir(home / "out")) == ["po (2).json", "po.json"]
    # Without the hint a second write is a second delivery, as a new file of that name would be.
    assert delivery.push(job).uri.endswith("/out/po%20%283%29.json")


def test_a_replay_of_a_file_still_at_the_destination_adds_no_copy(home: Path) -> None:
    transfer_id = receive("po.json", b'{"po": 3}')
    carry([transfer_id])
    with session_scope() as session:
        replay = transfers.replay(session, home_scope(session), transfer_id)
        assert replay.id is not None
        replay_id = replay.id
    assert carry([replay_id]) == [TransferState.delivered]
    assert os.listdir(home / "out") == ["po.json"]


def test_overwrite_writes_again_and_fail_names_the_path(home: Path) -> None:
    with session_scope() as session:
        flow = dataflows.require(session, home_scope(session), "acme-out")
        flow.on_conflict = "fail"
        session.add(flow)
    (home / "out").mkdir()
    (home / "out" / "po.json").write_bytes(b"there first")
    transfer_id = receive("po.json", b"{}")
    (job,) = delivery.start([transfer_id])
    with pytest.raises(NameTaken, match=r"/out/po\.json exists and on_conflict is fail"):
        delivery.push(job)
    with session_scope() as session:
        flow = dataflows.require(session, home_scope(session), "acme-out")
        flow.on_conflict = "overwrite"
        session.add(flow)
    (job,) = delivery.start([transfer_id])
    assert delivery.push(job).uri.endswith("/out/po.json")
    assert (home / "out" / "po.json").read_bytes() == b"{}"
