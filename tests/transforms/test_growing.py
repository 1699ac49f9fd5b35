"""A file another program writes by its name is hashed as it grows, from the file's own bytes;
a program that writes past the limit is stopped; a file replaced under the path is noticed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.transforms.growing import GrowingFile, ReplacedError
from core.transforms.staging import FileIdentity, Staging

# A writer of its own process: COUNT blocks of BLOCK bytes, pausing now and then so the follower
# catches up with it and has to wait for more (the case a quick write never shows).
WRITER = """
import sys, time
block = bytes(range(256)) * 4096
with open(sys.argv[1], "r+b") as out:
    for i in range(int(sys.argv[2])):
        out.write(block[i % 7:] + block[:i % 7])
        out.flush()
        if i % 8 == 0:
            time.sleep(0.01)
"""
BLOCK = 256 * 4096


def expected(count: int) -> tuple[int, str]:
    block = bytes(range(256)) * 4096
    sha = hashlib.sha256()
    for i in range(count):
        sha.update(block[i % 7 :] + block[: i % 7])
    return count * BLOCK, sha.hexdigest()


def write_by_name(path: Path, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(count)])


def test_a_program_s_output_is_hashed_as_it_grows(tmp_path: Path) -> None:
    with Staging(tmp_path / "stage") as stage:
        with stage.create_for_program("out.bin") as growing:
            growing.follow()
            assert write_by_name(growing.path, 40).wait() == 0
        (staged,) = stage.files
    assert (staged.size, staged.sha256) == expected(40)
    assert hashlib.sha256(staged.path.read_bytes()).hexdigest() == staged.sha256
    assert staged.identity == FileIdentity.of(staged.path.stat())
    assert [p.name for p in (tmp_path / "stage").iterdir()] == ["0001"]


def test_past_the_limit_the_writer_is_stopped_and_nothing_is_staged(tmp_path: Path) -> None:
    stage = Staging(tmp_path / "stage")
    stopped: list[int] = []
    with pytest.raises(RuntimeError, match="passed the limit"), stage.create_for_program("big") as growing:
        writer = write_by_name(growing.path, 4000)  # ~4 GiB if nothing stopped it
        growing.follow(limit=8 * BLOCK, on_limit=lambda: stopped.append(writer.kill() or 1))
        writer.wait()
    assert stopped and growing.over_limit
    assert list((tmp_path / "stage").iterdir()) == [] and stage.files == []


def test_a_file_replaced_under_its_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        growing = GrowingFile(path, fd)
        growing.follow()
        path.unlink()
        path.write_bytes(b"someone else's")
        with pytest.raises(ReplacedError, match="replaced"):
            growing.finish()
    finally:
        os.close(fd)


def test_a_failed_write_removes_the_part_file(tmp_path: Path) -> None:
    stage = Staging(tmp_path / "stage")
    with pytest.raises(ValueError), stage.create_for_program("x") as growing:
        growing.follow()
        growing.path.write_bytes(b"half")
        raise ValueError("the program failed")
    assert list((tmp_path / "stage").iterdir()) == []
