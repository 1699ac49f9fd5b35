"""The heartbeat period of flow runs, without Prefect: read by the CLI before Prefect is imported.

A flow run sends `prefect.flow-run.heartbeat` every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds; the
dead-run automation (deployments/dead_runs.py) takes a run whose heartbeats stop for dead.
"""

from __future__ import annotations

import os

# What we ask of Prefect's flow runs: its minimum (it refuses less).
HEARTBEAT_SECONDS = 30
HEARTBEAT_VARIABLE = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
# The older name Prefect still reads for it (cli/prefect_names.py's table takes it from here).
HEARTBEAT_OLDER_NAMES = ("PREFECT_RUNNER_HEARTBEAT_FREQUENCY",)


class DeadRunSettingError(RuntimeError):
    """TRADELANE_DEAD_RUN_SECONDS cannot be kept with the heartbeat period in force."""


def heartbeat_seconds() -> int:
    """The heartbeat period flow runs use: the user's PREFECT_FLOWS_HEARTBEAT_FREQUENCY (or its older
    name), else ours."""
    for name in (HEARTBEAT_VARIABLE, *HEARTBEAT_OLDER_NAMES):  # the current name wins, as in Prefect
        if value := os.environ.get(name):
            try:
                return max(int(value), HEARTBEAT_SECONDS)  # Prefect itself sends no more often than 30 s
            except ValueError:
                raise DeadRunSettingError(f"{name}={value!r} is not a number of seconds") from None
    return HEARTBEAT_SECONDS
