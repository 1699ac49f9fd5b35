"""Every PREFECT_* setting a user gives is kept or refused by name, never silently replaced; a role
on its own refuses to start without what the roles share, naming each setting."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.supervisor import PrefectSettingError, prefect_environment
from core.config import Settings, get_settings
from tests.roles.topology import base_env


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    import os

    for variable in [v for v in os.environ if v.startswith(("PREFECT_", "TRADELANE_"))]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("TRADELANE_HOME", str(tmp_path))
    monkeypatch.setenv("TRADELANE_PREFECT_AUTH", "ops:secret")
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        get_settings.cache_clear()


def test_without_prefect_api_url_up_configures_its_own_server(clean_env: Settings) -> None:
    env = prefect_environment(clean_env)
    assert env["PREFECT_API_URL"] == clean_env.prefect_api_url
    assert env["PREFECT_SERVER_API_PORT"] == str(clean_env.prefect_port)
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("sqlite+aiosqlite:///")
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == "ops:secret"


def test_a_user_set_prefect_api_url_is_used_not_replaced(
    clean_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    env = prefect_environment(clean_env)
    assert env["PREFECT_API_URL"] == "http://prefect.example:4200/api"
    assert env["PREFECT_UI_API_URL"] == "http://prefect.example:4200/api"
    assert env["PREFECT_API_AUTH_STRING"] == "ops:secret"
    # Nothing of a server: up starts none.
    assert not [k for k in env if k.startswith(("PREFECT_SERVER_API_", "PREFECT_SERVER_DATABASE_CONN"))]


def test_the_users_own_prefect_values_are_kept(clean_env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "60")
    monkeypatch.setenv("PREFECT_HOME", "/srv/prefect-home")
    monkeypatch.setenv("PREFECT_SERVER_API_PORT", str(clean_env.prefect_port))  # agrees: fine
    env = prefect_environment(clean_env)
    assert env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] == "60"
    assert env["PREFECT_HOME"] == "/srv/prefect-home"


def test_the_older_names_of_our_defaults_are_prefects_own() -> None:
    """cli/prefect_names.py's table holds, for every setting `up` gives a default to or reads (the
    server's database), every name the installed Prefect reads for it."""
    from prefect.settings.models.root import Settings as PrefectSettings
    from pydantic_settings import BaseSettings

    from cli import prefect_names
    from cli.supervisor import PREFECT_DEFAULTS

    def names_in_prefects_model(variable: str) -> set[str]:
        models: list[type[BaseSettings]] = [PrefectSettings]
        while models:
            model = models.pop()
            for field in model.model_fields.values():
                if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
                    models.append(field.annotation)
                    continue
                choices = getattr(field.validation_alias, "choices", ())
                names = {choice.upper() for choice in choices if isinstance(choice, str)}
                if variable in names:
                    return names
        return {variable}

    for variable in {*PREFECT_DEFAULTS, *prefect_names.OLDER_NAMES}:
        assert set(prefect_names.setting_names(variable)) == names_in_prefects_model(variable), variable


def test_a_value_given_under_a_settings_older_name_is_kept(
    clean_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect reads a setting's current name before its older alias: a default of ours under the
    current name would silently win over the user's value under the old one."""
    from prefect.settings.models.root import Settings as PrefectSettings

    monkeypatch.setenv("PREFECT_API_DATABASE_TIMEOUT", "61")
    monkeypatch.setenv("PREFECT_API_SERVICES_EVENT_PERSISTER_BATCH_SIZE", "7")
    env = prefect_environment(clean_env)
    assert "PREFECT_SERVER_DATABASE_TIMEOUT" not in env
    assert "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE" not in env
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    seen = PrefectSettings()  # what the server started with this environment reads
    assert seen.server.database.timeout == 61
    assert seen.server.services.event_persister.batch_size == 7


def test_our_defaults_reach_prefect_where_the_user_gave_none(
    clean_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings.models.root import Settings as PrefectSettings

    for variable, value in prefect_environment(clean_env).items():
        monkeypatch.setenv(variable, value)
    seen = PrefectSettings()
    assert seen.server.database.timeout == 30
    assert seen.server.services.event_persister.batch_size == 200


@pytest.mark.parametrize(
    "variable", ["PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL"]
)
def test_a_users_database_for_the_prefect_server_is_used(
    clean_env: Settings, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    url = "postgresql+asyncpg://prefect:pw@db.example/prefect"
    monkeypatch.setenv(variable, url)
    env = prefect_environment(clean_env)
    assert env[variable] == url
    assert [k for k, v in env.items() if "sqlite" in v] == []


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("PREFECT_SERVER_API_PORT", "1", "TRADELANE_PREFECT_PORT"),
        ("PREFECT_SERVER_API_HOST", "0.0.0.0", "TRADELANE_PREFECT_HOST"),
        ("PREFECT_API_AUTH_STRING", "other:auth", "TRADELANE_PREFECT_AUTH and PREFECT_API_AUTH_STRING"),
    ],
)
def test_a_contradicting_prefect_setting_is_refused_by_name(
    clean_env: Settings, monkeypatch: pytest.MonkeyPatch, setting: str, value: str, named: str
) -> None:
    monkeypatch.setenv(setting, value)
    with pytest.raises(PrefectSettingError, match=named):
        prefect_environment(clean_env)


def test_two_different_prefect_databases_are_refused(
    clean_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "postgresql+asyncpg://a/one")
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://a/two")
    with pytest.raises(PrefectSettingError, match="two different databases"):
        prefect_environment(clean_env)


def _tradelane(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**base_env(), "TRADELANE_HOME": str(tmp_path / "home"), **env}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=full, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("role", "named"),
    [
        ("api", ["TRADELANE_DATABASE_URL", "TRADELANE_SECRET_KEY", "TRADELANE_STORAGE_URL"]),
        (
            "mailboxes",
            [
                "TRADELANE_DATABASE_URL",
                "TRADELANE_SECRET_KEY",
                "TRADELANE_STORAGE_URL",
                "TRADELANE_TLS_CERT_FILE",
                "TRADELANE_SFTP_HOST_KEY_DIR",
            ],
        ),
        ("dispatcher", ["TRADELANE_DATABASE_URL", "PREFECT_API_URL"]),
        ("prefect", ["TRADELANE_PREFECT_AUTH"]),
    ],
)
def test_a_role_alone_refuses_to_start_without_what_the_roles_share(
    tmp_path: Path, role: str, named: list[str]
) -> None:
    result = _tradelane(tmp_path, "serve", role)
    assert result.returncode == 1
    for setting in named:
        assert f"{setting} is not set" in result.stderr, result.stderr
    # It refused before making anything shared in its home.
    home = tmp_path / "home"
    assert not {"tradelane.db", "secret.key", "prefect-auth", "mailboxes"} & {p.name for p in home.glob("*")}


def test_up_refuses_a_prefect_port_that_contradicts_its_own(tmp_path: Path) -> None:
    result = _tradelane(tmp_path, "up", TRADELANE_PREFECT_PORT="4999", PREFECT_SERVER_API_PORT="4998")
    assert result.returncode == 1
    assert "PREFECT_SERVER_API_PORT=4998 differs from TRADELANE_PREFECT_PORT=4999" in result.stderr


def test_storage_is_an_absolute_folder_or_a_bucket(tmp_path: Path) -> None:
    """(An s3:// storage: tests/storage/test_storage_setting.py.)"""
    assert Settings(storage_url="file:///srv/shared%20files").mailbox_root == Path("/srv/shared files")
    with pytest.raises(ValueError, match="absolute"):
        Settings(storage_url="relative/folder")


def test_with_shared_storage_the_as2_spool_is_shared_too(
    clean_env: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The API resends AS2 messages a flow run spooled: apart, both find them in the storage."""
    from core.as2.settings import spool_root

    assert spool_root() == str(clean_env.home_dir / "as2")
    monkeypatch.setenv("TRADELANE_STORAGE_URL", str(tmp_path / "shared"))
    get_settings.cache_clear()
    assert spool_root() == str(tmp_path / "shared" / ".as2")
    monkeypatch.setenv("TRADELANE_AS2_SPOOL_DIR", str(tmp_path / "mine"))
    assert spool_root() == str(tmp_path / "mine")


def test_the_cli_sets_prefects_environment_before_prefect_is_imported() -> None:
    """Importing Prefect freezes its settings from the environment of that moment: were it imported
    before `up` applies its Prefect environment, `up`'s own clients would look for another server."""
    probe = "import sys, cli.main, cli.supervisor, cli.prefect_names; print('prefect' in sys.modules)"
    seen = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert seen.stdout.strip() == "False"
