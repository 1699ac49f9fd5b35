"""`make test` on pytest-xdist workers without starting a session `up` twice.

The unit of work a worker takes is a group of modules: each module's tests stay together, in order,
on one worker (its module- and class-scoped fixtures start once), and the modules that use the same
session `up` form one group, so each `up` starts once, on one worker, where tests/conftest.py still
stops it right after its last user.

xdist's own `--dist loadgroup` reads `xdist_group` marks into the node id, which pytest 9 no longer
lets it change; so the groups travel another way: each worker, once it has collected, writes them
to a file the controller named (`workerinput`), and the controller's scheduler (xdist's by-scope
scheduler, with our scopes) reads them before it hands out the first group.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler.loadscope import LoadScopeScheduling

HERE = Path(__file__).parent
# The session `up`s (and the Prefect server) that cost seconds to start and CPU while they idle, and
# stop after their last user (tests/system.py IDLE_AFTER_LAST_USE: tests/test_worker_groups.py
# checks that every fixture registered there is named here, or its users would be split over the
# workers and one worker would stop it while the other's users still come).
SHARED_UPS = ("system", "peer_pair", "outbox_system", "prefect_server", "web_system", "notify_system")
INPUT_KEY = "tradelane_groups_file"


def worker_groups(items: Iterable[Any]) -> dict[Path, str]:
    """The group of each test module: its own path, or one shared with every module that uses the
    same session `up` or package-scoped fixture (joined transitively). A package fixture (e.g.
    tests/as2's home) holds state for the package's modules, which pytest runs one after another."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    def join(a: str, b: str) -> None:
        parent[root(a)] = root(b)

    def name(path: Path) -> str:
        return Path(os.path.relpath(path, HERE)).with_suffix("").as_posix()

    items = list(items)
    for item in items:
        for fixture in SHARED_UPS:
            if fixture in getattr(item, "fixturenames", ()):
                join(name(item.path), f"up:{fixture}")
        info = getattr(item, "_fixtureinfo", None)
        for defs in info.name2fixturedefs.values() if info is not None else ():
            for fixturedef in defs:
                if fixturedef.scope == "package":
                    join(name(item.path), f"package:{fixturedef.baseid}")
    return {item.path: root(name(item.path)) for item in items}


def write_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker: the group of each module (by the node id's module part), for the controller."""
    target = getattr(config, "workerinput", {}).get(INPUT_KEY)
    if target is None:
        return
    groups = worker_groups(items)
    by_module = {item.nodeid.split("::", 1)[0]: groups[item.path] for item in items}
    partial = f"{target}.{os.getpid()}"
    Path(partial).write_text(json.dumps(by_module))
    os.replace(partial, target)  # both workers write the same; the controller reads a whole file


class GroupScheduling(LoadScopeScheduling):
    """xdist's by-scope scheduling, a scope being one of our groups."""

    def __init__(self, config: pytest.Config, log: Any, groups_file: Path) -> None:
        super().__init__(config, log)
        self.groups_file = groups_file
        self.groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self.groups is None:  # first asked once every worker has collected (and so written)
            self.groups = json.loads(self.groups_file.read_text())
        module = nodeid.split("::", 1)[0]
        return self.groups.get(module, module)
