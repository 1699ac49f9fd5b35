"""Prefect's settings dumped once per settings object in a worker, not three times for every run.

Before it forks a run, a worker dumps the settings in force three times: as the run's environment
twice (prefect/workers/base.py `_base_environment`, prefect/flow_engine.py
`run_flow_in_subprocess`) and as the settings context handed to the run. Each is a walk of
Prefect's whole settings model: ~12 % of a worker's Python in a burst (bench/scaleout.py
--profile), on the way from a run's Pending to its Running. Settings are not changed once built (a
change is a new object: `temporary_settings`), so each dump is made once per object and copied for
every caller. Installed on import.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from prefect.context import SettingsContext
from prefect.settings.models.root import Settings

# (id of the object, what was dumped) -> (the object, kept so its id is not reused; the dump)
_made: dict[tuple[Any, ...], tuple[object, Any]] = {}
_MOST = 64  # settings objects remembered (a worker has one or two)


def _once(owner: object, key: tuple[Any, ...], dump: Callable[[], Any]) -> Any:
    full = (id(owner), *key)
    found = _made.get(full)
    if found is None or found[0] is not owner:
        if len(_made) >= _MOST:
            _made.clear()
        found = _made[full] = (owner, dump())
    return found[1]


_to_environment_variables = Settings.to_environment_variables
_serialize = SettingsContext.serialize


def to_environment_variables(
    self: Settings, exclude_unset: bool = False, include_secrets: bool = True, include_aliases: bool = False
) -> dict[str, str]:
    made = _once(
        self,
        ("environment", exclude_unset, include_secrets, include_aliases),
        lambda: _to_environment_variables(self, exclude_unset, include_secrets, include_aliases),
    )
    return dict(made)  # names to strings: a shallow copy is the caller's own


def serialize(self: SettingsContext, include_secrets: bool = True) -> dict[str, Any]:
    made = _once(self, ("context", include_secrets), lambda: _serialize(self, include_secrets))
    return copy.deepcopy(made)


Settings.to_environment_variables = to_environment_variables  # type: ignore[method-assign,assignment]
SettingsContext.serialize = serialize  # type: ignore[method-assign]
