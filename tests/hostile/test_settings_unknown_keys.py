"""Issue 11, item 1: an endpoint setting that is accepted but ignored must not exist. Every path
that takes settings (the constructor, `endpoint add/set` flags, `apply -f` YAML) checks them with
the type's models, which refuse an unknown key by name; a row stored before keys were checked
still loads, and says what it ignores."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.endpoints.registry import endpoint_class, known_types
from core.endpoints.settings import SettingsError

runner = CliRunner()
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzOCWsUF8YpdPvplvmF5YuPGG9Klq7FZ87mxvC3Ri0G"
# One working (config, secrets) per type.
GOOD: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "as2": ({"partner": "GLOBEX"}, {}),
    "azure": ({"container": "inbound"}, {"connection_string": "AccountName=a;AccountKey=k"}),
    "email": ({"smtp_host": "smtp.example", "from": "a@example.test", "to": "b@example.test"}, {}),
    "file": ({"path": "/srv/archive"}, {}),
    "ftp": ({"host": "ftp.example", "user": "acme"}, {"password": "p"}),
    "http": ({"url": "https://erp.example/in"}, {"bearer": "t"}),
    "mailbox": ({"partner": "acme"}, {}),
    "peer": ({"connection": 1}, {}),
    "s3": ({"bucket": "inbound"}, {}),
    "sftp": ({"host": "sftp.example", "user": "acme", "host_key": HOST_KEY}, {"password": "p"}),
}


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return " ".join(result.output.split())


def test_every_type_is_covered() -> None:
    assert sorted(GOOD) == known_types()


@pytest.mark.parametrize("type_", sorted(GOOD))
def test_the_constructor_refuses_an_unknown_setting_or_secret_by_name(type_: str, home: Path) -> None:
    cls = endpoint_class(type_)
    config, secrets = GOOD[type_]
    cls(config, secrets).close()  # the good one builds
    with pytest.raises(SettingsError, match=f"{type_} endpoint: unknown setting 'colour'"):
        cls({**config, "colour": "red"}, secrets)
    with pytest.raises(SettingsError, match=f"{type_} endpoint: unknown secret 'pasword'"):
        cls(config, {**secrets, "pasword": "p"})


@pytest.mark.parametrize("type_", sorted(set(GOOD) - {"mailbox", "peer"}))
def test_apply_refuses_an_unknown_key_with_its_path(type_: str, home: Path, tmp_path: Path) -> None:
    config, secrets = GOOD[type_]
    spec = tmp_path / "t.yaml"
    item = {"name": "e", "type": type_, **config, "secrets": secrets}
    spec.write_text(json.dumps({"endpoints": [{**item, "colour": "red"}]}))
    assert f"endpoints[0].colour: unknown key for a {type_} endpoint" in run(
        "apply", "-f", str(spec), ok=False
    )
    spec.write_text(json.dumps({"endpoints": [{**item, "secrets": {**secrets, "pasword": "p"}}]}))
    refused = run("apply", "-f", str(spec), ok=False)
    assert f"endpoints[0].secrets.pasword: unknown key for the secrets of a {type_} endpoint" in refused
    assert json.loads(run("endpoint", "list", "--json")) == []  # nothing applied
    spec.write_text(json.dumps({"endpoints": [item]}))
    assert "endpoint e: created" in run("apply", "-f", str(spec))


def test_the_cli_refuses_a_flag_of_another_type_and_an_unknown_flag(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = run("endpoint", "add", "a", "--type", "file", "--path", "/srv/a", "--bucket", "b", ok=False)
    assert "--bucket does not apply to --type file (its flags: --path)" in refused
    assert "No such option: --colour" in run(
        "endpoint", "add", "a", "--type", "file", "--colour", "r", ok=False
    )
    # A variable meant for another type is not a flag given: it is left alone.
    monkeypatch.setenv("TRADELANE_S3_ACCESS_KEY_ID", "AKIA-from-env")
    run("endpoint", "add", "a", "--type", "file", "--path", "/srv/a")
    run("endpoint", "add", "lake", "--type", "s3", "--bucket", "b", "--secret-access-key", "s")
    listed = {row["name"]: row for row in json.loads(run("endpoint", "list", "--json"))}
    assert listed["a"]["secrets"] == [] and listed["lake"]["secrets"] == [
        "access_key_id",
        "secret_access_key",
    ]


def test_a_row_stored_before_keys_were_checked_still_loads_and_says_what_it_ignores(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run("endpoint", "add", "archive", "--type", "file", "--path", str(home / "out"))
    (home / "out").mkdir()
    with sqlite3.connect(home / "tradelane.db") as db:  # as an old `apply` stored a typo
        db.execute("""update endpoint set config = '{"path": "%s", "pth": "/typo"}'""" % (home / "out"))
        old_ftp = {"host": "127.0.0.1", "port": "2121", "user": "u", "verify": "false", "tls": "None"}
        db.execute(
            "insert into endpoint (account_id, name, type, config, created_at) select account_id, 'old-ftp', "
            "'ftp', ?, created_at from endpoint where name = 'archive'",
            (json.dumps(old_ftp),),
        )
    with caplog.at_level(logging.WARNING):
        assert "reachable" in run("endpoint", "test", "archive")
    assert "ignoring stored keys its type does not know: pth" in caplog.text
    listed = {row["name"]: row for row in json.loads(run("endpoint", "list", "--json"))}
    assert listed["archive"]["config"] == {"path": str(home / "out")}
    assert listed["old-ftp"]["config"] == {
        "host": "127.0.0.1",
        "port": 2121,
        "user": "u",
        "verify": False,
        "tls": "none",
    }
    assert "changed pth (unknown, dropped)" in run("endpoint", "set", "archive", "--unset", "pth")
    with sqlite3.connect(home / "tradelane.db") as db:
        [(config,)] = db.execute("select config from endpoint where name = 'archive'").fetchall()
    assert json.loads(config) == {"path": str(home / "out")}
