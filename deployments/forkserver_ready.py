"""Imported last into the runner's fork server: what every flow run would otherwise do first, done once.

A run forked from the server inherits its heap (copy-on-write, frozen by forkserver_guard), so
whatever is made ready here no run makes again. py-spy over a burst (bench/burst_cpu.py
--profile) showed each run paying, before or while carrying its first file:

* imports no template imports: Prefect's flow and task engines (and `graphviz`, which
  prefect.tasks imports on every task call), anyio's asyncio backend, sqlite3 and psycopg (the
  store's drivers), rich's emoji table;
* completing ~260 of Prefect's pydantic models, left incomplete at import (forward references)
  and completed at first use: the client's FlowRun, Deployment, WorkPool, log and artifact models;
* configuring SQLAlchemy's mappers (at a run's first query).

About 75-110 ms of CPU per run on the two-core machine, ~2 ms a file at batches of 50. Nothing
here opens a connection or reads a setting: the run still starts from its own environment.
"""

from __future__ import annotations

import contextlib
import importlib

from pydantic import BaseModel
from sqlalchemy.orm import configure_mappers

# Imported by every run's engine or its first task, not by the templates' modules.
MODULES = [
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "anyio._backends._asyncio",
    "sqlite3",
    "rich._emoji_codes",
]
# A store on PostgreSQL: the driver SQLAlchemy imports when a run makes its engine (~10 % of a
# worker's CPU in a burst of the scale-out topology, bench/scaleout.py --profile). Optional (the
# `postgres` extra): without it, the rest is still made ready (a preload that fails to import
# makes the fork server skip the whole module, silently).
OPTIONAL_MODULES = ["psycopg", "sqlalchemy.dialects.postgresql.psycopg"]


def _models() -> list[type[BaseModel]]:
    """Every pydantic model class defined so far."""
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return list(seen)


def complete_models() -> int:
    """Complete the models pydantic left incomplete at import; how many. One it still cannot
    complete is left to complete (or fail) at first use, as it would have."""
    done = 0
    for model in _models():
        if model.__dict__.get("__pydantic_complete__", True):
            continue
        try:
            model.model_rebuild()
        except Exception:  # left as pydantic left it: its first use says why
            continue
        done += 1
    return done


for name in MODULES:
    importlib.import_module(name)
for name in OPTIONAL_MODULES:
    with contextlib.suppress(ImportError):
        importlib.import_module(name)
complete_models()
with contextlib.suppress(Exception):  # a broken mapper fails the runs that query it, not the server
    configure_mappers()
