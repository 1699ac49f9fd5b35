"""A flow-run process killed (SIGKILL) while a step writes its derived file: the step runs again,
the file is delivered once, whole, and no half file is left in staging or at the destination."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core import delivery
from core.delivery import ChecksumMismatch, Outcome
from core.derived import staging_root
from flows.compress import Params, compress, compress_flow
from tests.derived.support import (
    add_dir_endpoint,
    add_flow,
    receive,
    run,
    staged_files,
    view,
)
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]

# The flow run's process: the compress step, its source stalled after 1 MiB (the injected crash
# point is only where it waits to be killed; the kill itself is a real SIGKILL).
CHILD = """
import sys, time
from core import delivery, derived
from flows.compress import Params, compress

real_read = derived._Reading.read

def stalling(self, n=-1):
    if self.size > 1024 * 1024:
        time.sleep(3600)
    return real_read(self, n)

derived._Reading.read = stalling
(job,) = delivery.start([int(sys.argv[1])])
compress(job, Params())
"""


@pytest.fixture(scope="module")
def out(derived_home: Path, prefect_server: None) -> Path:
    folder = derived_home.parent / "crash-out"
    add_dir_endpoint("crash-out", folder)
    return folder


def _half_written() -> list[Path]:
    root = staging_root()
    return [p for p in root.rglob("*.part") if p.stat().st_size > 0] if root.exists() else []


def test_sigkill_mid_transform_then_rerun_delivers_once_and_leaves_no_half_file(out: Path) -> None:
    flow_id = add_flow("crashy-gz", "acme", "crash-out", dest_path="{name}")
    data = os.urandom(4 * 1024 * 1024)  # incompressible: gzip writes as it reads
    transfer_id = receive("acme", "big.bin", data, flow_id)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(transfer_id)], cwd=REPO)
    try:
        wait_for(lambda: bool(_half_written()) or child.poll() is not None, "the step to be mid-write", 60)
        assert child.poll() is None, "the step ended before it could be killed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert _half_written()  # the kill left a half file in staging, never a derived file
    assert not (out / "big.bin.gz").exists()
    assert view(transfer_id).state == "running"

    state = run(compress_flow, flow_id, [transfer_id], {})  # what the dispatcher's recovery starts

    assert state.is_completed(), state.message
    assert [p.name for p in out.iterdir()] == ["big.bin.gz"]
    assert gzip.decompress((out / "big.bin.gz").read_bytes()) == data
    row = view(transfer_id)
    assert row.state == "delivered" and len(row.derived) == 1
    assert staged_files() == []


def test_a_derived_file_changed_before_the_push_is_not_delivered(out: Path) -> None:
    flow_id = add_flow("tampered-gz", "acme", "crash-out", dest_path="tampered/{name}")
    transfer_id = receive("acme", "t.txt", b"to be compressed\n" * 1000, flow_id)
    (job,) = delivery.start([transfer_id])
    job = compress(job, Params())
    with job.carried.path.open("r+b") as staged:  # damaged on disk between the step and the push
        staged.write(b"\0\0\0\0")
    with pytest.raises(ChecksumMismatch) as refused:
        delivery.push(job)
    assert not (out / "tampered").exists() or list((out / "tampered").iterdir()) == []
    delivery.record_outcomes([Outcome(job, error=refused.value)])
    assert view(transfer_id).state == "failed"
    assert staged_files() == []  # final: the damaged derived file is removed with the rest
