"""Shared pytest fixtures: real servers come from tests/servers.py."""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import socket_births as _socket_births
from tests import system as _system
from tests import xdist_groups as _xdist_groups
from tests.b2b.helpers import *  # noqa: F403
from tests.b2b.outbox_system import *  # noqa: F403
from tests.b2b.peers_pair import *  # noqa: F403
from tests.derived.support import prefect_server  # noqa: F401  (one for the session)
from tests.endpoint_servers.azurite import *  # noqa: F403
from tests.endpoint_servers.ftpd import *  # noqa: F403
from tests.endpoint_servers.http_app import *  # noqa: F403
from tests.endpoint_servers.mail import *  # noqa: F403
from tests.endpoint_servers.sshd import *  # noqa: F403
from tests.isolation import isolated_home
from tests.servers import *  # noqa: F403
from tests.system import *  # noqa: F403

_socket_births.install()


@pytest.hookimpl(trylast=True)  # after pytest's own unraisable hook is in place
def pytest_configure(config: pytest.Config) -> None:
    _socket_births.name_births_in_unraisable_errors()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A throwaway home of tradelane's own for one test (a module may define a `home` of its own)."""
    with isolated_home(tmp_path / "home") as path:
        yield path


@pytest.fixture
def opened() -> Iterator[contextlib.ExitStack]:
    """Closes what a test opens (`opened.enter_context(endpoint)`) when the test ends, pass or fail.
    An endpoint left open keeps its pooled connections until the garbage collector finds them, and
    the ResourceWarning that then raises is an error, reported in whichever test is running."""
    with contextlib.ExitStack() as stack:
        yield stack


# Session-wide servers that several modules use. Those modules run one after the other (from where
# the first of them ran), so the server stops after them instead of idling through every module in
# between. The order within each module, and of all other modules, stays.
RUN_TOGETHER = ("peer_pair", "outbox_system", "prefect_server", "web_system")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for name in RUN_TOGETHER:
        users = list(dict.fromkeys(i.path for i in items if name in getattr(i, "fixturenames", ())))
        if len(users) < 2:
            continue
        later = set(users[1:])
        moved = [i for i in items if i.path in later]
        kept = [i for i in items if i.path not in later]
        after = max(n for n, i in enumerate(kept) if i.path == users[0])
        items[:] = kept[: after + 1] + moved + kept[after + 1 :]

    _xdist_groups.write_groups(config, items)


_LAST_USER_OF: dict[str, list[str]] = {}  # test id -> the session `up`s no later test uses


def pytest_collection_finish(session: pytest.Session) -> None:
    last: dict[str, str] = {}
    for item in session.items:
        for name in getattr(item, "fixturenames", ()):
            last[name] = item.nodeid
    _LAST_USER_OF.clear()
    for name, nodeid in last.items():
        _LAST_USER_OF.setdefault(nodeid, []).append(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Once the last test that uses a session-wide `up` has torn down, stop that `up` (its fixture
    still cleans up at the end of the session): idle, it would go on costing CPU the others need."""
    result = yield
    for name in _LAST_USER_OF.get(item.nodeid, ()):
        release = _system.IDLE_AFTER_LAST_USE.pop(name, None)
        if release is not None:
            release()
    return result


@pytest.hookimpl(optionalhook=True)  # xdist's controller, before it starts a worker
def pytest_configure_node(node: Any) -> None:
    node.workerinput[_xdist_groups.INPUT_KEY] = str(_groups_file(node.config))


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # ours, before xdist's own for `--dist loadgroup`
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    return _xdist_groups.GroupScheduling(config, log, _groups_file(config))


def _groups_file(config: pytest.Config) -> Path:
    """Where the workers write the groups (tests/xdist_groups.py): one per controller."""
    path: Path | None = getattr(config, "_tradelane_groups_file", None)
    if path is None:
        path = Path(tempfile.gettempdir()) / f"tradelane-xdist-groups-{os.getpid()}.json"
        config._tradelane_groups_file = path  # type: ignore[attr-defined]
        config.add_cleanup(lambda: path.unlink(missing_ok=True))
    return path


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands its `up` starts to the controller, which prints them all."""
    output: dict[str, object] | None = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["up_starts"] = [list(start) for start in _system.UP_STARTS]
        output["prefect_stalls"] = [list(stall) for stall in _system.PREFECT_STALLS]


@pytest.hookimpl(optionalhook=True)  # an xdist hook: the controller hears a worker finish
def pytest_testnodedown(node: Any, error: object) -> None:
    for test, seconds in getattr(node, "workeroutput", {}).get("up_starts", ()):
        _system.UP_STARTS.append((str(test), float(seconds)))
    for test, said in getattr(node, "workeroutput", {}).get("prefect_stalls", ()):
        _system.PREFECT_STALLS.append((str(test), str(said)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many `tradelane up` starts the run made, and where: each costs seconds, so a module that
    starts its own where the session's would do shows up here. Before them, any stall their Prefect
    servers said they had (deployments/prefect_stalls.py)."""
    if stalls := _system.PREFECT_STALLS:
        terminalreporter.section(f"Prefect servers of `tradelane up` stalled: {len(stalls)} warnings")
        for test, said in stalls:
            terminalreporter.write_line(f"{test}: {said}")
    starts = _system.UP_STARTS
    if not starts:
        return
    total = sum(seconds for _, seconds in starts)
    terminalreporter.section(f"tradelane up: {len(starts)} starts, {total:.1f} s until they answered")
    for test, seconds in starts:
        terminalreporter.write_line(f"{seconds:6.1f}s  {test}")
