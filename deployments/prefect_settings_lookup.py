"""The Prefect server finding its current settings without raising an exception each time.

Prefect 3.8.8's `get_current_settings()` begins with `from prefect.context import SettingsContext`.
That import statement looks up `__path__` on `prefect.context`, whose module `__getattr__` (kept
for names Prefect 3.0 moved) answers by raising AttributeError: every call raises and catches an
exception. The server calls it on every event for each resource's label limit, and through
`Setting.value()` (`PREFECT_….value()`, e.g. the related-resources and event-size limits) all
over: it made validating a file event about a third slower (~100 → ~75 µs). Here the event schemas
and `Setting.value()` read the same settings context, imported once, and the event name's limit is
found in `prefect.settings` without its module `__getattr__`.
"""

from __future__ import annotations

import prefect.server.events.schemas.events as event_schemas
import prefect.settings
import prefect.settings.legacy as legacy_settings
from prefect.context import SettingsContext
from prefect.settings.models.root import Settings


def current_settings() -> Settings:
    """What `prefect.settings.get_current_settings()` returns: the active context's, or the
    environment's."""
    context = SettingsContext.get()
    if context is not None:
        return context.settings
    return Settings()


def install() -> None:
    event_schemas.get_current_settings = current_settings  # type: ignore[attr-defined]
    legacy_settings.get_current_settings = current_settings  # type: ignore[attr-defined]
    # An event's name is checked against a limit imported from `prefect.settings` on every event,
    # which that module's `__getattr__` makes each time; the same (cached) setting, kept in the
    # module, is found at once.
    prefect.settings.PREFECT_SERVER_EVENTS_MAXIMUM_EVENT_NAME_LENGTH = (
        prefect.settings.PREFECT_SERVER_EVENTS_MAXIMUM_EVENT_NAME_LENGTH
    )
