"""Issue 14, items 1 and 2: data flows choose a template and its params (`flow add/set`, YAML);
params are checked against the template's model when set; `template list/show`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.isolation import isolated_home
from tradelane import templates

runner = CliRunner()
PASSWORD = "Tr4de-lane-Pass"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    import tests.templates.sample  # noqa: F401  (registers `sample`)

    templates.register(templates.get("sample"), replace=True)
    with isolated_home(tmp_path / "home") as path:
        run("partner", "add", "acme", "--password", PASSWORD)
        run("endpoint", "add", "archive", "--type", "file", "--path", str(tmp_path / "archive"))
        yield path


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return " ".join(result.output.split())


def flow_json(name: str) -> dict[str, object]:
    rows = json.loads(runner.invoke(app, ["flow", "list", "--json"]).output)
    return next(row for row in rows if row["name"] == name)


def add(name: str, *extra: str, ok: bool = True) -> str:
    return run("flow", "add", name, "--source", "mailbox:acme", "--dest", "archive", *extra, ok=ok)


def test_a_flow_runs_transfer_with_no_params_by_default(home: Path) -> None:
    add("plain")
    assert flow_json("plain")["template"] == "transfer" and flow_json("plain")["params"] == {}


def test_params_are_checked_and_stored_as_given(home: Path) -> None:
    rules = '[{"ST":"850","dest":"erp"}]'
    said = add("s1", "--template", "sample", "--param", "recipients=a,b", "--param", f"rules={rules}")
    assert "template sample" in said
    row = flow_json("s1")
    assert row["template"] == "sample"
    assert row["params"] == {"recipients": "a,b", "rules": [{"ST": "850", "dest": "erp"}]}
    # JSON values are decoded (true, 7) but a number given for a text param stays text
    add(
        "s2",
        "--template",
        "sample",
        "--param",
        "recipients=x",
        "--param",
        "armor=false",
        "--param",
        "label=123",
    )
    assert flow_json("s2")["params"] == {"recipients": "x", "armor": False, "label": "123"}


def test_an_unknown_template_is_refused_listing_the_known_ones(home: Path) -> None:
    said = add("bad", "--template", "pgp-encrpyt", ok=False)
    assert "unknown template 'pgp-encrpyt'" in said and "sample" in said and "transfer" in said
    assert "Traceback" not in said


def test_an_unknown_param_is_refused_naming_it_and_the_known_ones(home: Path) -> None:
    said = add("bad", "--template", "sample", "--param", "recipients=a", "--param", "armour=true", ok=False)
    assert "has no param 'armour'" in said and "armor" in said
    said = add("bad", "--param", "x=1", ok=False)
    assert "template 'transfer' has no param 'x'" in said


def test_a_param_of_the_wrong_type_or_missing_is_refused_naming_it(home: Path) -> None:
    said = add("bad", "--template", "sample", "--param", "recipients=a", "--param", "count=many", ok=False)
    assert "param 'count'" in said and "integer" in said and "'many'" in said
    said = add("bad", "--template", "sample", "--param", "recipients=a", "--param", "mode=slow", ok=False)
    assert "param 'mode'" in said and "'fast' or 'safe'" in said
    said = add("bad", "--template", "sample", ok=False)
    assert "param 'recipients'" in said and "required" in said.lower()
    said = add("bad", "--template", "sample", "--param", "recipients", ok=False)
    assert "expected key=value" in said
    assert "no data flow" in run("flow", "set", "bad", "--param", "count=2", ok=False)


def test_flow_set_changes_params_and_template(home: Path) -> None:
    add("s", "--template", "sample", "--param", "recipients=a")
    assert "params" in run("flow", "set", "s", "--param", "count=5")
    assert flow_json("s")["params"] == {"recipients": "a", "count": 5}
    assert "integer" in run("flow", "set", "s", "--param", "count=five", ok=False)
    assert flow_json("s")["params"] == {"recipients": "a", "count": 5}  # unchanged by the refusal
    assert "required" in run("flow", "set", "s", "--no-params", ok=False).lower()
    assert "template transfer" in run("flow", "set", "s", "--template", "transfer")
    assert flow_json("s")["template"] == "transfer" and flow_json("s")["params"] == {}
    assert "unknown template" in run("flow", "set", "s", "--template", "nope", ok=False)


def test_yaml_takes_template_and_params_and_refuses_bad_ones(home: Path, tmp_path: Path) -> None:
    doc = tmp_path / "flows.yaml"
    doc.write_text(
        "flows:\n"
        "  - {name: y, source: 'mailbox:acme', dest: archive, template: sample,\n"
        "     params: {recipients: ops, rules: [{UNH: ORDERS, dest: eu}]}}\n"
    )
    assert "flow y: created" in run("apply", "-f", str(doc))
    assert "flow y: unchanged" in run("apply", "-f", str(doc))
    assert flow_json("y")["params"] == {"recipients": "ops", "rules": [{"UNH": "ORDERS", "dest": "eu"}]}
    doc.write_text("flows:\n  - {name: y, source: 'mailbox:acme', dest: archive, template: sample,\n"
                   "     params: {recipients: ops, count: lots}}\n")  # fmt: skip
    said = run("apply", "-f", str(doc), ok=False)
    assert "flows[0].params" in said and "param 'count'" in said
    doc.write_text("flows:\n  - {name: y, source: 'mailbox:acme', dest: archive, templat: sample}\n")
    assert "flows[0].templat: unknown key" in run("apply", "-f", str(doc), ok=False)
    doc.write_text("flows:\n  - {name: z, source: 'mailbox:acme', dest: archive, template: nope}\n")
    assert "unknown template 'nope'" in run("apply", "-f", str(doc), ok=False)
    assert flow_json("y")["params"] == {"recipients": "ops", "rules": [{"UNH": "ORDERS", "dest": "eu"}]}


def test_template_list_and_show(home: Path) -> None:
    listed = json.loads(runner.invoke(app, ["template", "list", "--json"]).output)
    by_name = {row["name"]: row for row in listed}
    assert by_name["transfer"]["source"] == "built-in" and by_name["sample"]["error"] is None
    shown = json.loads(runner.invoke(app, ["template", "show", "transfer", "--json"]).output)
    assert shown["params"] == [] and shown["tasks"] == ["start", "validate", "push"]
    assert "destination" in shown["description"]
    shown = json.loads(runner.invoke(app, ["template", "show", "sample", "--json"]).output)
    params = {p["name"]: p for p in shown["params"]}
    assert params["recipients"] == {
        "name": "recipients",
        "type": "str",
        "required": True,
        "default": None,
        "description": "Who it is for (required).",
    }
    assert params["count"]["default"] == 3 and params["count"]["type"] == "int"
    text = run("template", "show", "sample")
    assert "recipients" in text and "required" in text and "A sample template for tests." in text
    assert "unknown template 'nope'" in run("template", "show", "nope", ok=False)


def test_template_new_refuses_a_bad_name_and_an_existing_folder(home: Path, tmp_path: Path) -> None:
    assert "lowercase letters" in run("template", "new", "My Template", "--dir", str(tmp_path), ok=False)
    assert "written" in run("template", "new", "stamp", "--dir", str(tmp_path))
    assert "exists already" in run("template", "new", "stamp", "--dir", str(tmp_path), ok=False)
    assert (tmp_path / "stamp" / "pyproject.toml").read_text().count(
        'stamp = "stamp_template.flow:stamp"'
    ) == 1


def test_a_routing_template_takes_no_destination_and_every_endpoint_it_names_must_exist(
    home: Path, tmp_path: Path
) -> None:
    run("endpoint", "add", "erp", "--type", "file", "--path", str(tmp_path / "erp"))
    rules = '[{"ST":"850","dest":"erp"},{"UNH":"ORDERS","dest":"archive"}]'
    said = run("flow", "add", "route", "--source", "mailbox:acme", "--template", "edi-route",
               "--param", f"rules={rules}")  # fmt: skip
    assert "template edi-route" in said
    assert flow_json("route")["dest"] == "by rules: erp, archive"

    refused = add("route2", "--template", "edi-route", "--param", f"rules={rules}", ok=False)
    assert "chooses each file's destination from its params (erp, archive): give no --dest" in refused
    missing = '[{"ST":"850","dest":"nowhere"}]'
    said = run("flow", "add", "route3", "--source", "mailbox:acme", "--template", "edi-route",
               "--param", f"rules={missing}", ok=False)  # fmt: skip
    assert "nowhere" in said
    plain = run("flow", "add", "plain2", "--source", "mailbox:acme", ok=False)
    assert "a destination is required" in plain

    doc = tmp_path / "route.yaml"
    doc.write_text(
        "flows:\n"
        "  - {name: yroute, source: 'mailbox:acme', template: edi-route,\n"
        "     params: {rules: [{ST: '850', dest: erp}]}}\n"
    )
    assert "flow yroute: created" in run("apply", "-f", str(doc))
    assert "flow yroute: unchanged" in run("apply", "-f", str(doc))
    doc.write_text("flows:\n  - {name: yplain, source: 'mailbox:acme'}\n")
    assert "flows[0].dest: a destination is required" in run("apply", "-f", str(doc), ok=False)
    assert all(r["name"] != "yplain" for r in _flows())


def _flows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(runner.invoke(app, ["flow", "list", "--json"]).output)
    return rows
