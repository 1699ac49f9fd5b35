"""A derived file bound for a folder on its own filesystem is put there by a hard link, not copied,
and still verified against its SHA-256 first; to a folder on another filesystem it is copied."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import pytest

from core import delivery
from flows.compress import Params, compress
from tests.derived.support import add_dir_endpoint, add_flow, receive, sha256

DATA = b"a line to compress\n" * 5000


def test_a_derived_file_lands_by_a_hard_link_of_the_staged_file(derived_home: Path) -> None:
    out = derived_home.parent / "linked-out"
    add_dir_endpoint("linked-out", out)
    flow_id = add_flow("linked-gz", "acme", "linked-out", dest_path="{name}")
    transfer_id = receive("acme", "po.txt", DATA, flow_id)
    (job,) = delivery.start([transfer_id])
    job = compress(job, Params())

    delivered = delivery.push(job)

    landed = out / "po.txt.gz"
    assert delivered.uri == landed.as_uri()
    assert landed.stat().st_ino == job.carried.path.stat().st_ino  # the staged file itself, no copy
    assert sha256(landed.read_bytes()) == job.carried.sha256 and gzip.decompress(landed.read_bytes()) == DATA
    assert [p.name for p in out.iterdir()] == ["po.txt.gz"]  # no temporary name left beside it


def test_to_a_folder_on_another_filesystem_the_derived_file_is_copied(derived_home: Path) -> None:
    if not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == derived_home.stat().st_dev:
        pytest.fail("this test needs /dev/shm on a filesystem of its own, apart from the test's home")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as elsewhere:
        out = Path(elsewhere) / "out"
        add_dir_endpoint("copied-out", out)
        flow_id = add_flow("copied-gz", "acme", "copied-out", dest_path="{name}")
        transfer_id = receive("acme", "po2.txt", DATA, flow_id)
        (job,) = delivery.start([transfer_id])
        job = compress(job, Params())

        delivery.push(job)

        landed = out / "po2.txt.gz"
        assert landed.stat().st_ino != job.carried.path.stat().st_ino
        assert sha256(landed.read_bytes()) == job.carried.sha256
        assert gzip.decompress(landed.read_bytes()) == DATA
