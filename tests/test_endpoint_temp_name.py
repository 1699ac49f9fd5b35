"""`--temp-name` (CLI) and `temp_name` (YAML) reach the stored sftp/ftp endpoint; a wrong one is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.endpoints.tempname import is_temp_name, temp_name

runner = CliRunner()
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzOCWsUF8YpdPvplvmF5YuPGG9Klq7FZ87mxvC3Ri0G"


def configs() -> dict[str, dict[str, object]]:
    result = runner.invoke(app, ["endpoint", "list", "--json"])
    assert result.exit_code == 0, result.output
    return {row["name"]: row["config"] for row in json.loads(result.output)}


def test_cli_and_yaml_store_temp_name(home: Path, tmp_path: Path) -> None:
    sftp = ["--type", "sftp", "--host", "h.example", "--user", "u", "--password", "p", "--host-key", HOST_KEY]
    ftp = ["--type", "ftp", "--host", "h.example", "--user", "u", "--password", "p"]
    for args in (["s-none", *sftp, "--temp-name", "none"], ["f-prefix", *ftp, "--temp-name", "prefix"]):
        result = runner.invoke(app, ["endpoint", "add", *args])
        assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["endpoint", "add", "f-default", *ftp]).exit_code == 0
    bad = runner.invoke(app, ["endpoint", "add", "f-bad", *ftp, "--temp-name", "dot"])
    assert bad.exit_code == 1 and "temp_name" in bad.output and "suffix, prefix, none" in bad.output
    spec = tmp_path / "tradelane.yaml"
    spec.write_text(
        "endpoints:\n"
        "  - {name: y-none, type: ftp, host: h.example, user: u, temp_name: none, secrets: {password: p}}\n"
    )
    assert runner.invoke(app, ["apply", "-f", str(spec)]).exit_code == 0
    stored = configs()
    assert stored["s-none"]["temp_name"] == "none"
    assert stored["f-prefix"]["temp_name"] == "prefix"
    assert stored["y-none"]["temp_name"] == "none"
    assert "temp_name" not in stored["f-default"]  # the default, suffix
    assert "f-bad" not in stored


@pytest.mark.parametrize("mode", ["suffix", "prefix"])
def test_temporary_names_fit_and_are_recognised(mode: str) -> None:
    for name in ("po.json", "é" * 127 + ".edi", "n" * 255):
        temp = temp_name(name, mode)
        assert len(temp.encode()) <= 255
        assert temp != name and is_temp_name(temp)
        temp.encode().decode()  # never cut inside a character
    assert not is_temp_name("po.json") and not is_temp_name("po.json.part")
    assert temp_name("po.json", "none") == "po.json"
