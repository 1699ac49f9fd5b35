"""A run killed inside a PGP operation cannot delete its throwaway GnuPG home, which may hold an
unprotected private key: the next process that makes a home deletes the homes of dead processes,
and leaves those of live ones alone."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.servers import require_tool

HOLD_A_HOME = """
import sys, time
from core.pgp.gnupg_home import GnupgHome
home = GnupgHome()
(home.path / "private-keys-v1.d").mkdir()
print(home.path, flush=True)
time.sleep(120)
"""

MAKE_A_HOME = "from core.pgp.gnupg_home import GnupgHome\nGnupgHome().close()\n"


def _holder() -> tuple[subprocess.Popen[str], Path]:
    child = subprocess.Popen([sys.executable, "-c", HOLD_A_HOME], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    return child, Path(child.stdout.readline().strip())


def test_the_home_of_a_killed_process_is_deleted_by_the_next_and_a_live_ones_is_kept() -> None:
    require_tool("gpg")
    killed, orphan = _holder()
    alive, kept = _holder()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert (orphan / "private-keys-v1.d").is_dir()  # nobody deleted it on the way out
        subprocess.run([sys.executable, "-c", MAKE_A_HOME], check=True, timeout=60)
        assert not orphan.exists()
        assert (kept / "private-keys-v1.d").is_dir()
    finally:
        for child in (killed, alive):
            child.kill()
            child.wait(timeout=30)
            assert child.stdout is not None
            child.stdout.close()
    subprocess.run([sys.executable, "-c", MAKE_A_HOME], check=True, timeout=60)
    assert not kept.exists()
