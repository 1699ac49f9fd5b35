"""Issue 14, item 5: docs/templates.md's walkthrough, step by step, through a real `tradelane up`:
scaffold (`template new`), its test passing before install, `pip install -e` into this environment,
`up` (re)started, `flow add --template --param`, upload, delivered (and rejected, saying why).

Also through that `up`: an installed template package that fails to import is named in `up`'s log
and the others work; a data flow whose template the running `up` does not know (installed after it
started) fails its files with a reason that says to restart `up`, never leaving them pending.
The pip install is undone when the module ends, so other tests see the environment as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e.helpers import PartnerClient, settled, unique
from tests.hostile.test_templates_packages import fake_distribution
from tests.system import System, run_system

PASSWORD = "partner-pw-1"
DIST = "tradelane-template-stamp"


def tradelane(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRADELANE_", "PYTEST_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tradelane-walkthrough-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def scaffolded(work: Path) -> Path:
    """Step 1: `tradelane template new stamp --dir ~/src`."""
    said = tradelane(clean_env(TRADELANE_HOME=str(work / "cli-home")), "template", "new", "stamp", "--dir",
                     str(work / "src"))  # fmt: skip
    assert "template stamp written" in said
    return work / "src" / "stamp"


@pytest.fixture(scope="module")
def installed(scaffolded: Path) -> Iterator[Path]:
    """Step 4: `pip install -e ~/src/stamp` into tradelane's environment; undone at the end."""
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "install", "-q", "-e", str(scaffolded)], check=True, timeout=300, capture_output=True
    )
    try:
        yield scaffolded
    finally:
        subprocess.run([*pip, "uninstall", "-q", "-y", DIST], check=True, timeout=120, capture_output=True)


@pytest.fixture(scope="module")
def broken_site(work: Path) -> Path:
    """An installed package whose template fails to import, on `up`'s PYTHONPATH."""
    site = work / "broken-site"
    site.mkdir()
    fake_distribution(
        site, "acme-broken-template", "acme_broken_tpl", "import gnupg_that_is_not_here\n",
        "broken = acme_broken_tpl:flow",
    )  # fmt: skip
    return site


@pytest.fixture(scope="module")
def system(installed: Path, broken_site: Path) -> Iterator[System]:
    """`tradelane up`, (re)started after the install, as the walkthrough says."""
    with run_system(PYTHONPATH=str(broken_site)) as running:
        yield running


def test_step_3_the_scaffolded_test_passes_before_installing(scaffolded: Path, work: Path) -> None:
    """Step 3: `cd ~/src/stamp && pytest`, with nothing installed yet."""
    listed = tradelane(clean_env(TRADELANE_HOME=str(work / "cli-home")), "template", "list", "--json")
    assert "stamp" not in {row["name"] for row in json.loads(listed)}  # not installed
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=scaffolded,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_steps_4_and_5_installed_template_is_listed_and_a_data_flow_runs_it(
    system: System, tmp_path: Path
) -> None:
    rows = {row["name"]: row for row in json.loads(system.cli("template", "list", "--json").stdout)}
    assert rows["stamp"]["source"] == DIST and rows["stamp"]["error"] is None
    shown = json.loads(system.cli("template", "show", "stamp", "--json").stdout)
    assert [p["name"] for p in shown["params"]] == ["starts_with"] and shown["tasks"] == [
        "start",
        "check",
        "push",
    ]

    partner, archive = unique("acme"), unique("archive")
    system.cli("partner", "add", partner, "--password", PASSWORD)
    system.cli("endpoint", "add", archive, "--type", "file", "--path", str(tmp_path))
    flow = unique("stamped")
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", archive,
               "--template", "stamp", "--param", "starts_with=HELLO")  # fmt: skip
    with PartnerClient(system, partner, PASSWORD) as client:
        assert client.upload("good.txt", b"HELLO world").status_code == 201
        assert client.upload("bad.txt", b"goodbye").status_code == 201
    by_name = {row["file"]: row for row in system.wait_for(settled(2), flow=flow)}
    assert by_name["good.txt"]["state"] == "delivered"
    assert (tmp_path / "good.txt").read_bytes() == b"HELLO world"
    assert by_name["bad.txt"]["state"] == "rejected"
    assert "does not start with 'HELLO'" in by_name["bad.txt"]["error"]
    assert not (tmp_path / "bad.txt").exists()


def test_a_broken_package_is_named_by_up_and_refused_by_flow_add(system: System) -> None:
    for log in ("up.log", "logs/runner.log"):  # what `up` prints, and its runner's log
        text = (system.home / log).read_text(errors="replace")
        assert "template 'broken' from package 'acme-broken-template' failed to load" in text, log
        assert "gnupg_that_is_not_here" in text, log
    said = system.cli("flow", "add", unique("f"), "--source", "mailbox:x", "--dest", "y",
                      "--template", "broken", check=False)  # fmt: skip
    assert said.returncode != 0 and "acme-broken-template" in said.stderr + said.stdout


def test_a_template_installed_after_up_started_fails_files_with_a_reason(
    system: System, work: Path, tmp_path: Path
) -> None:
    late = work / "late-site"
    late.mkdir(exist_ok=True)
    source = "from tests.templates.sample import sample\n"
    fake_distribution(late, "acme-late-template", "acme_late_tpl", source, "sample = acme_late_tpl:sample")
    cli_env = {**system.env, "PYTHONPATH": os.pathsep.join([system.env["PYTHONPATH"], str(late)])}
    partner, archive, flow = unique("acme"), unique("archive"), unique("late")
    tradelane(cli_env, "partner", "add", partner, "--password", PASSWORD)
    tradelane(cli_env, "endpoint", "add", archive, "--type", "file", "--path", str(tmp_path))
    tradelane(cli_env, "flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", archive,
              "--template", "sample", "--param", "recipients=ops")  # fmt: skip
    with PartnerClient(system, partner, PASSWORD) as client:
        assert client.upload("po.txt", b"data").status_code == 201
    (row,) = system.wait_for(settled(1), flow=flow)
    assert row["state"] == "failed"
    assert "unknown template 'sample'" in row["error"] and "restarted" in row["error"]


def test_params_that_no_longer_fit_their_template_fail_the_files_saying_which(
    system: System, tmp_path: Path
) -> None:
    """Params are checked when set; if the template changed since (a package upgraded), the
    dispatcher refuses to start a run that would fail before taking its files (and be re-dispatched
    for ever), and fails them naming the param."""
    partner, archive, flow = unique("acme"), unique("archive"), unique("stale")
    system.cli("partner", "add", partner, "--password", PASSWORD)
    system.cli("endpoint", "add", archive, "--type", "file", "--path", str(tmp_path))
    system.cli("flow", "add", flow, "--source", f"mailbox:{partner}", "--dest", archive,
               "--template", "stamp")  # fmt: skip
    with closing(sqlite3.connect(system.home / "tradelane.db")) as db, db:
        db.execute("UPDATE dataflow SET params = ? WHERE name = ?", ('{"starts_with": 5}', flow))
    with PartnerClient(system, partner, PASSWORD) as client:
        assert client.upload("po.txt", b"HELLO").status_code == 201
    (row,) = system.wait_for(settled(1), flow=flow)
    assert row["state"] == "failed" and "param 'starts_with'" in row["error"]
    assert not (tmp_path / "po.txt").exists()
