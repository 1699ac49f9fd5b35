"""Push fencing for a derived file put in place by a hard link (core/delivery.py `still_carrying`):
a run whose transfer the dispatcher gave to another run leaves no file at the destination, and the
run that holds it delivers it once."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import delivery, transfers
from core.db import session_scope
from core.delivery import TransferTaken
from flows.compress import Params, compress
from tests.derived.support import add_dir_endpoint, add_flow, receive

DATA = b"a line to compress\n" * 5000


def test_a_linked_derived_file_is_not_put_in_place_by_a_run_that_lost_its_transfer(
    derived_home: Path,
) -> None:
    out = derived_home.parent / "fenced-out"
    add_dir_endpoint("fenced-out", out)
    flow_id = add_flow("fenced-gz", "acme", "fenced-out", dest_path="{name}")
    transfer_id = receive("acme", "po.txt", DATA, flow_id)
    (job,) = delivery.start_run([transfer_id], "run-1").jobs
    job = compress(job, Params())
    with session_scope() as session:  # run-1 looked dead: requeued, and run-2 took the file
        assert transfers.requeue(session, [transfer_id], "run-1 looked dead", from_run="run-1") == 1
    (taken,) = delivery.start_run([transfer_id], "run-2").jobs

    with pytest.raises(TransferTaken, match="run run-1 no longer holds transfer"):
        delivery.push(job)
    assert not out.exists() or list(out.iterdir()) == []  # no file, and no temporary name left

    delivered = delivery.push(compress(taken, Params()))
    assert delivered.uri == (out / "po.txt.gz").as_uri()
    assert [p.name for p in out.iterdir()] == ["po.txt.gz"]
