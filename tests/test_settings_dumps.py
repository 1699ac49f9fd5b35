"""A worker dumps Prefect's settings once per settings object (deployments/settings_dumps.py): the
dumps are the ones Prefect makes, each caller gets its own copy, and new settings are dumped anew."""

from __future__ import annotations

import pytest
from prefect.context import SettingsContext
from prefect.settings import PREFECT_API_URL, Settings, get_current_settings, temporary_settings

from deployments import settings_dumps


def test_the_environment_is_prefects_own_made_once_and_each_callers_to_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings_dumps, "_made", {})  # what other tests dumped is not counted
    made: list[bool] = []
    prefects = settings_dumps._to_environment_variables

    def counted(settings: Settings, *args: bool) -> dict[str, str]:
        made.append(True)
        return prefects(settings, *args)

    monkeypatch.setattr(settings_dumps, "_to_environment_variables", counted)
    settings = get_current_settings()
    fresh = prefects(settings, exclude_unset=True)
    first = settings.to_environment_variables(exclude_unset=True)
    assert first == fresh
    first["PREFECT_API_URL"] = "http://changed-by-a-caller:1/api"
    again = settings.to_environment_variables(exclude_unset=True)
    assert again == fresh and again is not first
    assert len(made) == 1
    assert settings.to_environment_variables() == prefects(settings)  # other arguments: another dump
    assert len(made) == 2


def test_the_settings_context_is_prefects_own_and_nested_changes_stay_the_callers() -> None:
    context = SettingsContext.get()
    assert context is not None
    fresh = settings_dumps._serialize(context)
    first = context.serialize()
    assert first == fresh
    first["settings"]["api"] = {"url": "http://changed-by-a-caller:1/api"}
    assert context.serialize() == fresh


def test_settings_changed_meanwhile_are_dumped_anew() -> None:
    before = get_current_settings().to_environment_variables(exclude_unset=True)
    with temporary_settings({PREFECT_API_URL: "http://another-server:1/api"}):
        during = get_current_settings().to_environment_variables(exclude_unset=True)
        context = SettingsContext.get()
        assert context is not None
        assert context.serialize()["settings"]["api"]["url"] == "http://another-server:1/api"
    assert during["PREFECT_API_URL"] == "http://another-server:1/api"
    assert get_current_settings().to_environment_variables(exclude_unset=True) == before
