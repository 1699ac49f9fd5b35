"""How often a worker asks Prefect for runs: every 0.5 s alone, every 2 s as `up`'s own worker,
which `up`'s dispatcher nudges after each run it creates (each ask costs the Prefect server ~30 ms
of CPU); TRADELANE_RUNNER_POLL_SECONDS, when set, for both."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import NUDGED_POLL_SECONDS, POLL_SECONDS, Settings
from deployments import nudge
from deployments.worker import make_worker


def _prefetch(settings: Settings, nudged_at: Path | None) -> float:
    worker = make_worker(settings, name="poll-test", nudged_at=nudged_at)
    return float(worker._prefetch_seconds)


def test_a_nudged_worker_asks_less_often(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADELANE_RUNNER_POLL_SECONDS", raising=False)
    monkeypatch.delenv("PREFECT_WORKER_PREFETCH_SECONDS", raising=False)
    settings = Settings(home=tmp_path)
    socket = nudge.socket_path(tmp_path)
    assert (settings.poll_seconds(nudged=False), settings.poll_seconds(nudged=True)) == (0.5, 2.0)
    assert (POLL_SECONDS, NUDGED_POLL_SECONDS) == (0.5, 2.0)
    assert make_worker(settings, name="poll-test", nudged_at=socket).nudged
    assert _prefetch(settings, socket) == NUDGED_POLL_SECONDS
    assert _prefetch(settings, None) == POLL_SECONDS
    # A home too deep for a Unix socket's address: no nudge can come, so it asks as often as alone.
    deep = tmp_path / ("d" * 120) / "run" / "worker-nudge.sock"
    assert not make_worker(settings, name="poll-test", nudged_at=deep).nudged
    assert _prefetch(settings, deep) == POLL_SECONDS


def test_a_set_interval_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELANE_RUNNER_POLL_SECONDS", "0.25")
    monkeypatch.delenv("PREFECT_WORKER_PREFETCH_SECONDS", raising=False)
    settings = Settings(home=tmp_path)
    assert settings.poll_seconds(nudged=True) == settings.poll_seconds(nudged=False) == 0.25
    assert _prefetch(settings, nudge.socket_path(tmp_path)) == 0.25
    monkeypatch.setenv("TRADELANE_RUNNER_POLL_SECONDS", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(home=tmp_path)
