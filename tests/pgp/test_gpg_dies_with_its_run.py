"""A gpg that writes its output file by name has no pipe to us that breaks when the run that started
it is killed: it is bound to die with it instead (setpriv's parent-death signal), so a killed run
leaves no gpg decrypting on, unwatched, into a staged file nobody takes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.pgp.gnupg_home import dies_with_caller
from tests.pgp.support import GpgCli, ours, partner, pgp_home  # noqa: F401
from tests.servers import require_tool

ZEROS = 1024 * 1024 * 1024  # what the message inflates to: seconds of gpg's work at least

# The run: decrypt the message into a staged file made for a program, as pgp-decrypt does.
RUN = """
import sys
from pathlib import Path
from core.transforms.staging import Staging
from tests.pgp.support import decrypt
with Staging(Path(sys.argv[2])) as stage, open(sys.argv[1], "rb") as source:
    with stage.create_for_program("zeros") as out:
        decrypt(source, out)
"""


def gpg_writing(path: Path) -> list[int]:
    """The pids of processes whose command line names `path` (gpg --output path)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.fixture
def run_tmp() -> Iterator[Path]:
    """The killed run's TMPDIR (short: a GnuPG home's sockets live in it). That run cannot close its
    throwaway GnuPG home: its agent is stopped and the folder removed here."""
    folder = Path(tempfile.mkdtemp(prefix="tl-kill-"))
    yield folder
    for home in folder.glob("tradelane-gpg-*"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_killed_run_takes_its_gpg_with_it(
    partner: GpgCli,  # noqa: F811
    ours: str,  # noqa: F811
    tmp_path: Path,
    run_tmp: Path,
) -> None:
    assert dies_with_caller(), "setpriv (util-linux) with --pdeathsig is needed on Linux"
    message = tmp_path / "zeros.gpg"
    with subprocess.Popen(["head", "-c", str(ZEROS), "/dev/zero"], stdout=subprocess.PIPE) as zeros:
        subprocess.run(
            [require_tool("gpg"), "--homedir", str(partner.home), "--batch", "--trust-model", "always",
             "--encrypt", "-r", ours, "--compress-algo", "zlib", "--output", str(message)],
            stdin=zeros.stdout, check=True, timeout=300,
        )  # fmt: skip
    stage = tmp_path / "stage"
    part = stage / "0001.part"
    run = subprocess.Popen(
        [sys.executable, "-c", RUN, str(message), str(stage)], env={**os.environ, "TMPDIR": str(run_tmp)}
    )
    deadline = time.monotonic() + 120
    while not (part.exists() and part.stat().st_size > 1024 * 1024 and gpg_writing(part)):
        assert run.poll() is None and time.monotonic() < deadline, "the run never got gpg writing"
        time.sleep(0.01)

    run.send_signal(signal.SIGKILL)
    run.wait()

    deadline = time.monotonic() + 60
    while gpg_writing(part):
        assert time.monotonic() < deadline, "gpg outlived its run"
        time.sleep(0.05)
    assert part.stat().st_size < ZEROS  # stopped mid-way, not left to finish
