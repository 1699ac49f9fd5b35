"""Issue 11, item 1: a new endpoint type is one module plus one registry line. The `memory` type
(tests/endpoint_types/memory.py) is registered with one `register()` call and then gets, without
any other tradelane file knowing it: `endpoint add` flags, `endpoint set`, `apply` YAML, `endpoint
schema`, `endpoint list --json`, `endpoint test`, and its secret scrubbed from what it says."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.endpoints import registry
from core.endpoints.registry import endpoint_class, register, unregister, user_types
from core.endpoints.settings import EndpointSettings
from tests.endpoint_types.memory import SPACES, TOKENS, MemoryEndpoint

runner = CliRunner()
TOKEN = "memory-token-6b1d0e"


@pytest.fixture
def memory_type() -> Iterator[None]:
    register("memory", "tests.endpoint_types.memory:MemoryEndpoint")  # the one line
    SPACES.clear()
    TOKENS.clear()
    try:
        yield
    finally:
        unregister("memory")


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return " ".join(result.output.split())


def listed(name: str) -> dict[str, object]:
    return next(row for row in json.loads(run("endpoint", "list", "--json")) if row["name"] == name)


def test_a_registered_type_gets_its_cli_flags_listing_and_schema(home: Path, memory_type: None) -> None:
    assert "memory" in user_types() and endpoint_class("memory") is MemoryEndpoint
    run(
        "endpoint", "add", "scratch", "--type", "memory", "--space", "s1", "--max-files", "5",
        "--label", "a", "--label", "b", "--color", "red", "--token", TOKEN,
    )  # fmt: skip
    row = listed("scratch")
    assert row["config"] == {"space": "s1", "max_files": 5, "labels": ["a", "b"], "color": "red"}
    assert row["secrets"] == ["token"]
    assert TOKEN not in run("endpoint", "list", "--json")
    with sqlite3.connect(home / "tradelane.db") as db:
        assert TOKEN not in json.dumps(db.execute("select config, secrets from endpoint").fetchall())
        assert TOKEN not in json.dumps(db.execute("select detail from auditevent").fetchall())
    assert "reachable" in run("endpoint", "test", "scratch")

    # Flags come from the model: its checks, its choices, and no flag of another type.
    assert "--type memory needs --space" in run("endpoint", "add", "x", "--type", "memory", ok=False)
    refused = run("endpoint", "add", "x", "--type", "memory", "--space", "s", "--max-files", "0", ok=False)
    assert "'max_files' (--max-files): input should be greater than or equal to 1" in refused
    refused = run("endpoint", "add", "x", "--type", "memory", "--space", "s", "--color", "blue", ok=False)
    assert "must be one of red, green, not 'blue'" in refused
    refused = run("endpoint", "add", "x", "--type", "memory", "--space", "s", "--bucket", "b", ok=False)
    assert "--bucket does not apply to --type memory" in refused
    assert [r["name"] for r in json.loads(run("endpoint", "list", "--json"))] == ["scratch"]

    # endpoint set: the same flags; the others stay.
    assert "changed labels, read_only" in run(
        "endpoint", "set", "scratch", "--read-only", "--unset", "labels"
    )
    assert listed("scratch")["config"] == {"space": "s1", "max_files": 5, "read_only": True, "color": "red"}
    assert listed("scratch")["secrets"] == ["token"]

    # The JSON Schema a form is made from.
    schema = json.loads(run("endpoint", "schema", "memory"))
    assert schema["properties"]["type"] == {"const": "memory", "title": "Type"}
    assert schema["required"] == ["name", "type", "space"]
    assert schema["properties"]["max_files"]["minimum"] == 1
    assert schema["properties"]["color"]["enum"] == ["red", "green"]
    assert schema["properties"]["read_only"]["description"] == "Refuse writes and deletes."
    token = schema["properties"]["secrets"]["properties"]["token"]
    assert token["writeOnly"] is True and token["format"] == "password"
    assert schema["additionalProperties"] is False
    every = json.loads(run("endpoint", "schema"))
    assert "memory" in [one["properties"]["type"]["const"] for one in every["oneOf"]]


def test_a_registered_type_gets_its_yaml(home: Path, memory_type: None, tmp_path: Path) -> None:
    spec = tmp_path / "tradelane.yaml"
    spec.write_text(
        "endpoints:\n"
        "  - {name: scratch, type: memory, space: s2, labels: [x], secrets: {token: " + TOKEN + "}}\n"
    )
    assert "endpoint scratch: created" in run("apply", "-f", str(spec))
    assert "endpoint scratch: unchanged" in run("apply", "-f", str(spec))
    assert listed("scratch")["config"] == {"space": "s2", "labels": ["x"]}
    for text, message in (
        (
            "{name: y, type: memory, space: s, maxfiles: 3}",
            "endpoints[0].maxfiles: unknown key for a memory endpoint",
        ),
        ("{name: y, type: memory, space: s, secrets: {tokn: t}}", "endpoints[0].secrets.tokn: unknown key"),
        ("{name: y, type: memory}", "endpoints[0].space: required for a memory endpoint"),
        ("{name: y, type: memory, space: s, max_files: none}", "endpoints[0].max_files: input should be"),
    ):
        spec.write_text(f"endpoints:\n  - {text}\n")
        assert message in run("apply", "-f", str(spec), ok=False), text
    assert [r["name"] for r in json.loads(run("endpoint", "list", "--json"))] == ["scratch"]


def test_a_registered_types_secrets_are_scrubbed_from_what_it_says(memory_type: None) -> None:
    TOKENS["locked"] = "the-right-token"
    endpoint = MemoryEndpoint({"space": "locked"}, {"token": TOKEN})
    assert endpoint.secret_values() == {TOKEN}
    with pytest.raises(Exception, match=r"token \*\*\* refused") as refused:
        list(endpoint.list())
    assert TOKEN not in str(refused.value)


def test_an_installed_package_adds_a_type_with_an_entry_point(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a separate package does: one entry point in `tradelane.endpoints`; every process finds it."""
    dist = tmp_path / "site" / "tradelane_memory-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tradelane-memory\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[tradelane.endpoints]\nmemory = tests.endpoint_types.memory:MemoryEndpoint\n"
    )
    assert "memory" not in registry.known_types()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry.refresh()
    try:
        assert "memory" in user_types()
        run("endpoint", "add", "m", "--type", "memory", "--space", "s3")
        assert listed("m")["config"] == {"space": "s3"}
    finally:
        monkeypatch.undo()
        registry.refresh()
    assert "memory" not in registry.known_types()


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("s3", "tests.endpoint_types.memory:MemoryEndpoint")
    with pytest.raises(ValueError, match="lowercase name"):
        register("Memory", MemoryEndpoint)


class NamedSettings(EndpointSettings):
    name: str  # would clash with the endpoint's own name in YAML


def test_a_setting_may_not_take_a_key_an_endpoint_declaration_uses() -> None:
    from core.endpoints.base import Endpoint

    with pytest.raises(TypeError, match="a setting may not be named name"):

        class Clash(Endpoint):
            scheme = "clash"
            settings: NamedSettings
