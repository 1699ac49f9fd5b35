"""Imported into the runner's fork server: a run no longer builds Prefect's settings a second time.

Before its first step, each forked flow run built Prefect's whole settings model twice: from its
environment (`run_flow_with_env`'s `Settings()`, which also reads `.env`, `prefect.toml` and the
profiles file; pickled with the call, so out of reach here) and again from the settings the
worker handed over (`hydrated_context`'s `SettingsContext(**serialized)`): 50-60 ms of CPU each on
the two-core machine, every run.

The second is skipped when it would build what is in force already: the run's PREFECT_*
environment is the fork server's plus the worker's settings as variables (what Prefect hands a run
when the worker's environment was the fork server's: deployments/worker.py's `prepare_process`
sees to that), so the context `run_flow_with_env` entered holds these settings, and the worker
handed over exactly them (compared serialized). Anything else (a setting the worker changed, a
variable set for one deployment) is built as Prefect builds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import prefect.flow_engine as engine
from prefect.context import SettingsContext
from prefect.settings.models.root import Settings


def prefect_environment() -> dict[str, str]:
    """The variables Prefect's settings read (matched without regard to case; `PREFECT__…` are
    Prefect's own hand-over to a run, no settings)."""
    return {k: v for k, v in os.environ.items() if k.upper().startswith("PREFECT_") and k[8:9] != "_"}


_SETTINGS = Settings()
# A run's environment: the fork server's, plus the worker's settings as variables (Prefect's
# run_flow_in_subprocess), which are these settings when the worker's environment was this one.
_ENVIRONMENT = {**_SETTINGS.to_environment_variables(exclude_unset=True), **prefect_environment()}
_context = SettingsContext.get()
_SERIALIZED = _context.serialize() if _context is not None else None
_hydrated_context = engine.hydrated_context  # type: ignore[attr-defined]


@contextmanager
def hydrated_context(serialized_context: dict[str, Any] | None = None, client: Any = None) -> Iterator[None]:
    """Prefect's `hydrated_context`, minus rebuilding a settings context equal to the one in force."""
    if serialized_context and already_in_force(serialized_context):
        serialized_context = {**serialized_context, "settings_context": {}}
    with _hydrated_context(serialized_context, client):
        yield


def already_in_force(serialized_context: dict[str, Any]) -> bool:
    handed_over = serialized_context.get("settings_context")
    return bool(handed_over) and handed_over == _SERIALIZED and prefect_environment() == _ENVIRONMENT


engine.hydrated_context = hydrated_context  # type: ignore[attr-defined]
