"""The dead-run bound (TRADELANE_DEAD_RUN_SECONDS) and `up`'s runner restarts: the pure parts.

The whole path (a real `up`, its runner SIGKILLed mid-push) is tests/e2e/test_dead_runner.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.supervisor import RestartBudget, prefect_environment
from core.config import Settings
from deployments import dead_runs, heartbeat
from deployments.dispatcher import ENDED, ORPHANED, dead_run_verdict


def test_the_window_keeps_the_bound_and_leaves_room_past_a_heartbeat() -> None:
    window = dead_runs.window_seconds(60, 30)
    # A death is requeued within: the window, Prefect's proactive check and action, the dispatcher's.
    checks = dead_runs.PROACTIVE_GRANULARITY_SECONDS + dead_runs.ACTING_SECONDS
    assert window + checks + dead_runs.RECOVERY_INTERVAL_SECONDS == 60
    assert window >= 30 + dead_runs.LATE_HEARTBEAT_ROOM_SECONDS
    trigger = dead_runs.automation(60).trigger
    assert trigger.within == timedelta(seconds=window)  # type: ignore[union-attr]


def test_a_bound_too_short_for_the_heartbeat_is_refused_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(heartbeat.HEARTBEAT_VARIABLE, "60")
    assert heartbeat.heartbeat_seconds() == 60  # the user's own heartbeat period is kept
    with pytest.raises(heartbeat.DeadRunSettingError) as refused:
        dead_runs.window_seconds(60, heartbeat.heartbeat_seconds())
    message = str(refused.value)
    assert "TRADELANE_DEAD_RUN_SECONDS=60" in message and "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in message
    assert "at least 82" in message


def test_up_asks_flow_runs_for_heartbeats_and_keeps_the_users_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path, prefect_auth="u:p")
    monkeypatch.delenv(heartbeat.HEARTBEAT_VARIABLE, raising=False)
    assert prefect_environment(settings)[heartbeat.HEARTBEAT_VARIABLE] == "30"
    monkeypatch.setenv(heartbeat.HEARTBEAT_VARIABLE, "45")
    assert prefect_environment(settings)[heartbeat.HEARTBEAT_VARIABLE] == "45"


def test_up_refuses_a_dead_run_bound_it_cannot_keep(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRADELANE_"))}
    env.update(TRADELANE_HOME=str(tmp_path), TRADELANE_DEAD_RUN_SECONDS="20")
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "up"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "TRADELANE_DEAD_RUN_SECONDS=20 is too short" in " ".join(result.stderr.split())
    assert not (tmp_path / "logs").exists()  # refused before any child was started


def test_the_heartbeat_period_given_under_its_older_name_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.worker import worker_prefect_environment

    # Every variable the worker's set-up may write, recorded to be put back after the test ("" is unset).
    for variable in (heartbeat.HEARTBEAT_VARIABLE, "PREFECT_API_AUTH_STRING", "TRADELANE_HOME"):
        monkeypatch.setenv(variable, "")
    monkeypatch.setenv("PREFECT_RUNNER_HEARTBEAT_FREQUENCY", "60")
    assert heartbeat.heartbeat_seconds() == 60
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # a worker with a server of its own
    worker_prefect_environment(Settings(home=tmp_path))
    assert os.environ[heartbeat.HEARTBEAT_VARIABLE] == "60"  # what its runs are started with
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "90")
    assert heartbeat.heartbeat_seconds() == 90  # the current name wins, as in Prefect


def test_a_worker_refuses_a_heartbeat_period_that_is_not_a_number(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRADELANE_"))}
    env.update(
        TRADELANE_HOME=str(tmp_path),
        PREFECT_API_URL="http://127.0.0.1:9/api",
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY="soon",
    )
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    said = " ".join(result.stderr.split())
    assert "PREFECT_FLOWS_HEARTBEAT_FREQUENCY='soon' is not a number of seconds" in said


def test_a_runner_that_keeps_dying_is_not_restarted_for_ever() -> None:
    budget = RestartBudget(limit=3, window=60)
    assert [budget.allow(t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert budget.allow(61)  # the first restart left the window


def test_a_dispatcher_alone_leaves_runs_older_than_itself_to_the_heartbeats() -> None:
    """A dispatcher restarted beside live workers must not take their runs for dead: only `up`,
    whose runner died with it, may requeue at start what was in flight."""
    booted = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    before = booted - timedelta(minutes=5)
    assert dead_run_verdict("RUNNING", before, booted, orphans_are_dead=False) is None
    assert dead_run_verdict("PENDING", before, booted, orphans_are_dead=False) is None
    assert dead_run_verdict("RUNNING", before, booted, orphans_are_dead=True) == ORPHANED
    assert dead_run_verdict("RUNNING", booted + timedelta(seconds=1), booted, orphans_are_dead=True) is None
    for state in ("CRASHED", "CANCELLED", "FAILED", "COMPLETED", "MISSING"):
        assert dead_run_verdict(state, before, booted, orphans_are_dead=False) == ENDED
    assert dead_run_verdict("SCHEDULED", before, booted, orphans_are_dead=True) is None


@pytest.mark.parametrize("setting", ["TRADELANE_RECONCILE_INTERVAL_SECONDS", "TRADELANE_RUNNER_LIMIT"])
def test_zero_is_refused_before_anything_starts(tmp_path: Path, setting: str) -> None:
    """A zero interval would have the reconcilers spin on the Prefect API and the store; a worker
    limited to zero runs would take none, silently."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRADELANE_"))}
    env.update({"TRADELANE_HOME": str(tmp_path), setting: "0"})
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "up"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert f"{setting}: Input should be greater than 0" in result.stderr
    assert not (tmp_path / "logs").exists()
