"""A worker's default name (issue 15): the same at every start on one host with one home, so a
restarted worker is the same entry in the Prefect UI and the same `prefect.worker.name` label, not
a new one per process id; yet two workers running at once in one home get two names."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from deployments.worker_name import default_worker_name

ROOT = Path(__file__).resolve().parents[1]
# A worker process: says its default name, then holds it until its stdin closes.
HOLDER = (
    "import sys; from pathlib import Path; from deployments.worker_name import default_worker_name; "
    "print(default_worker_name(Path(sys.argv[1])), flush=True); sys.stdin.read()"
)


def start(home: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def stop(process: subprocess.Popen[str]) -> None:
    process.communicate(timeout=30)
    assert process.returncode == 0


def test_a_restarted_worker_keeps_its_name_and_two_at_once_differ(tmp_path: Path) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    home.mkdir()
    other.mkdir()
    first, name = start(home)
    assert name.startswith(f"{socket.gethostname()}-") and len(name) == len(socket.gethostname()) + 9
    second, second_name = start(home)  # running meanwhile, same home
    assert second_name == f"{name}-2"
    stop(first)
    stop(second)
    again, again_name = start(home)  # a restart (the first's lock went with its process)
    assert again_name == name
    elsewhere, elsewhere_name = start(other)  # another home on this host
    assert elsewhere_name not in (name, f"{name}-2")
    stop(again)
    stop(elsewhere)


def test_a_killed_worker_leaves_its_name_free(tmp_path: Path) -> None:
    first, name = start(tmp_path)
    first.kill()  # SIGKILL: no clean-up ran; the kernel releases the lock with the process
    first.communicate(timeout=30)
    assert default_worker_name(tmp_path) == name
