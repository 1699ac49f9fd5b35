"""tests/xdist_groups.py's groups: a module's tests stay together, and modules that share a
session `up` share a group, so no `up` starts on two workers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.xdist_groups import HERE, worker_groups


def _item(module: str, *fixtures: str) -> Any:
    return SimpleNamespace(path=HERE / module, fixturenames=["tmp_path", *fixtures])


def test_modules_sharing_a_session_up_are_one_group_and_others_keep_their_own() -> None:
    items = [
        _item("a/test_one.py"),
        _item("a/test_one.py", "system"),
        _item("b/test_two.py", "peer_pair"),
        _item("b/test_two.py"),
        _item("c/test_three.py", "system", "peer_pair"),  # joins the two groups above
        _item("c/test_four.py", "web_system"),
        _item("d/test_five.py", "web_system"),
        _item("d/test_six.py", "moto_server"),  # a cheap server: each worker may start its own
        _item("d/test_seven.py", "moto_server"),
    ]
    groups = worker_groups(items)

    def group(module: str) -> str:
        return groups[HERE / module]

    assert group("a/test_one.py") == group("b/test_two.py") == group("c/test_three.py")
    assert group("c/test_four.py") == group("d/test_five.py") == "up:web_system"
    assert group("d/test_six.py") == "d/test_six"
    assert group("d/test_seven.py") == "d/test_seven"
    assert len(set(groups.values())) == 4


def test_every_up_that_stops_after_its_last_user_keeps_its_users_on_one_worker() -> None:
    # A fixture registered in IDLE_AFTER_LAST_USE but missing from SHARED_UPS had its users split
    # over the workers, and one worker stopped it while the other's users still came (CI, notify).
    import re

    from tests.xdist_groups import SHARED_UPS

    registered = {
        match
        for path in HERE.rglob("*.py")
        for match in re.findall(r'IDLE_AFTER_LAST_USE\["(\w+)"\]', path.read_text())
    }
    assert registered and registered <= set(SHARED_UPS), registered - set(SHARED_UPS)


def test_modules_sharing_a_package_fixture_are_one_group() -> None:
    def item(module: str, scope: str) -> Any:
        fixturedef = SimpleNamespace(scope=scope, baseid="as2")
        info = SimpleNamespace(name2fixturedefs={"as2_home": [fixturedef]})
        return SimpleNamespace(path=HERE / module, fixturenames=["as2_home"], _fixtureinfo=info)

    groups = worker_groups([item("as2/test_send.py", "package"), item("as2/test_receive.py", "package")])
    assert len(set(groups.values())) == 1
    groups = worker_groups([item("x/test_a.py", "session"), item("x/test_b.py", "session")])
    assert len(set(groups.values())) == 2
