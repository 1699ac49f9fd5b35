"""A derived file bound for a folder on its own filesystem is put there by a hard link, not copied,
and still verified against its SHA-256 first; to a folder on another filesystem it is copied."""

from __future__ import annotations

import gzip
import os
import tempfile
import time
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


def bytes_read_by_this_process() -> int:
    """Bytes this process has read by system calls so far (the kernel's count, page cache hits too)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def incompressible_derived_job(derived_home: Path, name: str) -> delivery.Job:
    out = derived_home.parent / f"{name}-out"
    add_dir_endpoint(f"{name}-out", out)
    flow_id = add_flow(f"{name}-gz", "acme", f"{name}-out", dest_path="{name}")
    transfer_id = receive("acme", f"{name}.bin", os.urandom(24 * 1024 * 1024), flow_id)
    (job,) = delivery.start([transfer_id])
    return compress(job, Params())


def test_a_staged_file_unchanged_since_it_was_hashed_is_linked_without_reading_it_back(
    derived_home: Path,
) -> None:
    """Its hash was taken from its bytes, and it is still that very file (inode, size, mtime):
    reading it back would prove nothing more, so the push reads none of it."""
    job = incompressible_derived_job(derived_home, "unread")
    before = bytes_read_by_this_process()

    delivery.push(job)

    assert bytes_read_by_this_process() - before < job.carried.size // 4
    landed = derived_home.parent / "unread-out" / "unread.bin.gz"
    assert landed.stat().st_ino == job.carried.path.stat().st_ino
    assert sha256(landed.read_bytes()) == job.carried.sha256


def test_a_staged_file_written_since_it_was_hashed_is_read_back_and_refused(derived_home: Path) -> None:
    """Bytes changed in place after the hash (same size): the file is not the one hashed, so it is
    read back, found different, and nothing lands."""
    job = incompressible_derived_job(derived_home, "changed")
    assert job.carried.identity is not None
    hashed_at = job.carried.identity.mtime_ns
    deadline = time.monotonic() + 10
    with job.carried.path.open("r+b") as staged:
        staged.seek(1000)
        flipped = bytes([staged.read(1)[0] ^ 1])
        # Written until the clock has moved on: the kernel stamps writes at its tick's resolution.
        while os.fstat(staged.fileno()).st_mtime_ns == hashed_at and time.monotonic() < deadline:
            staged.seek(1000)
            staged.write(flipped)
            staged.flush()
    assert job.carried.path.stat().st_mtime_ns != hashed_at
    assert job.carried.path.stat().st_size == job.carried.size

    with pytest.raises(delivery.ChecksumMismatch, match="changed since it was made or received"):
        delivery.push(job)

    assert list((derived_home.parent / "changed-out").glob("*")) == []
