"""The derived staging area is tidied: a final transfer's files go with it, and the sweep removes what
a killed run left for transfers that ended (or vanished) since, never a live transfer's files."""

from __future__ import annotations

from pathlib import Path

from core import delivery, derived
from core.delivery import Outcome
from core.endpoints.base import TransientError
from tests.derived.support import add_dir_endpoint, add_flow, receive


def _stage(transfer_id: int) -> Path:
    folder = derived.transfer_dir(transfer_id) / "01"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0001").write_bytes(b"left by a killed run")
    return folder


def test_sweep_removes_only_the_staged_files_of_final_or_unknown_transfers(derived_home: Path) -> None:
    add_dir_endpoint("sweep-out", derived_home.parent / "sweep-out")
    flow_id = add_flow("sweepy", "acme", "sweep-out")
    live = receive("acme", "live.txt", b"still being carried", flow_id)
    ended = receive("acme", "ended.txt", b"failed since", flow_id)
    (ended_job,) = delivery.start([ended])
    delivery.record_outcomes([Outcome(ended_job, error=TransientError("away"))])
    live_folder, ended_folder, unknown_folder = _stage(live), _stage(ended), _stage(987654)

    assert derived.sweep() == 2

    assert (live_folder / "0001").exists()
    assert not ended_folder.exists() and not unknown_folder.exists()
    (live_job,) = delivery.start([live])
    delivery.record_outcomes([Outcome(live_job, error=TransientError("away"))])
    assert not live_folder.exists()  # final: removed with the record, no sweep needed
