"""A flow run forked from the fork server does not build Prefect's settings a second time when the
worker handed over the very settings in force (deployments/forkserver_settings.py), and does when
they differ: a run always runs with the worker's settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# `tradelane worker`'s set-up, then one process forked the way Prefect starts a run: the worker's
# settings as variables over its environment (prefect.flow_engine.run_flow_in_subprocess), plus
# the heartbeat period its starter adds (prefect/runner/_starter_direct.py), and its serialized
# settings context handed over.
FORKED = """
import json, multiprocessing, os
from cli.worker import worker_prefect_environment
from core.config import get_settings
worker_prefect_environment(get_settings())  # before Prefect is imported, as `tradelane worker` does
os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2.0")  # as prepare_process does
from prefect.context import SettingsContext
from prefect.settings import get_current_settings
from deployments import heartbeat
from deployments.worker import start_flow_runs_from_forkserver
from tests.test_forkserver_settings import report

start_flow_runs_from_forkserver()
handed_over = SettingsContext.get().serialize()
env = get_current_settings().to_environment_variables(exclude_unset=True) | dict(os.environ)
env[heartbeat.HEARTBEAT_VARIABLE] = str(int(heartbeat.heartbeat_seconds()))  # as the starter does
context = multiprocessing.get_context("forkserver")
queue = context.Queue()
child = context.Process(target=report, args=(queue, env, handed_over))
child.start()
print(json.dumps(queue.get(timeout=120)))
child.join()
"""


def report(queue: Any, env: dict[str, str], handed_over: dict[str, Any]) -> None:
    import os

    from deployments.forkserver_settings import already_in_force

    os.environ.update(env)
    elsewhere = {
        **handed_over,
        "settings": {**handed_over["settings"], "api": {"url": "http://elsewhere:1/api"}},
    }
    queue.put(
        {
            "same": already_in_force({"settings_context": handed_over}),
            "another setting": already_in_force({"settings_context": elsewhere}),
        }
    )


@pytest.mark.parametrize("server", ["up's", "a server of its own (PREFECT_API_URL)"])
def test_a_forked_run_takes_the_settings_in_force_when_the_worker_handed_over_the_same(
    tmp_path: Path, server: str
) -> None:
    """With a server of its own, the worker's environment lacks `up`'s PREFECT_* defaults, the
    heartbeat period among them, which each run is started with."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PREFECT_")}
    env |= {"TRADELANE_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect")}
    if server != "up's":
        env["PREFECT_API_URL"] = "http://a-server-of-its-own:1/api"
    run = [sys.executable, "-c", FORKED]
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"same": True, "another setting": False}


# The context a run's engine enters: the handed-over settings when they differ from those in force.
HYDRATED = """
import json, os
from prefect.context import SettingsContext
from prefect.settings import get_current_settings
import deployments.forkserver_settings as fs
import prefect.flow_engine as engine

handed_over = SettingsContext.get().serialize()
elsewhere = {**handed_over, "settings": {**handed_over["settings"], "api": {"url": "http://elsewhere:1/api"}}}
seen = {}
with engine.hydrated_context({"settings_context": elsewhere}):
    seen["handed over another"] = str(get_current_settings().api.url)
with engine.hydrated_context({"settings_context": handed_over}):
    seen["handed over the same"] = str(get_current_settings().api.url)
os.environ["PREFECT_API_URL"] = "http://changed:1/api"  # the run's environment is not the fork server's
seen["environment changed"] = fs.already_in_force({"settings_context": handed_over})
print(json.dumps(seen))
"""


def test_a_run_handed_other_settings_runs_with_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PREFECT_")}
    env |= {"PREFECT_API_URL": "http://here:1/api", "PREFECT_HOME": str(tmp_path)}
    run = [sys.executable, "-c", HYDRATED]
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "handed over another": "http://elsewhere:1/api",
        "handed over the same": "http://here:1/api",
        "environment changed": False,
    }
