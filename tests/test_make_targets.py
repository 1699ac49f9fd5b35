"""The README's promise that `make up` brings what `up` runs on a fresh machine: the recipe `make`
would run (dry run, nothing executed) installs the runtime programs before starting tradelane."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _recipe(target: str) -> list[str]:
    make = shutil.which("make")
    assert make, "make is needed: it is how the README sets everything up"
    done = subprocess.run(
        [make, "-n", "-W", ".venv/.installed-stamp", "-o", ".venv/.installed-stamp", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.splitlines()


def test_make_up_installs_gpg_before_starting() -> None:
    lines = _recipe("up")
    runtime = next(i for i, line in enumerate(lines) if "scripts/install-runtime.sh" in line)
    start = next(i for i, line in enumerate(lines) if line.endswith("tradelane up"))
    assert runtime < start
    script = (ROOT / "scripts" / "install-runtime.sh").read_text()
    assert "command -v gpg" in script and "need+=(gnupg)" in script


def test_make_test_installs_the_runtime_programs_too() -> None:
    assert any("scripts/install-runtime.sh" in line for line in _recipe("test"))


def test_make_test_prints_the_slowest_tests_for_the_ci_log() -> None:
    [pytest] = [line for line in _recipe("test") if "bin/pytest" in line]
    assert "--durations=30" in pytest.split()


def test_make_test_runs_one_process_and_workers_keep_each_session_up_on_one() -> None:
    """One process by default (tests still depend on running in one, see the Makefile); with
    TEST_WORKERS our groups (tests/xdist_groups.py) are scheduled only under --dist loadgroup:
    without it each worker would start its own session `up`s."""
    [pytest] = [line for line in _recipe("test") if "bin/pytest" in line]
    words = pytest.split()
    assert words[words.index("-n") + 1] == "0"
    assert words[words.index("--dist") + 1] == "loadgroup"
