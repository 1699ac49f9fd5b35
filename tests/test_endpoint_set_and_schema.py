"""`tradelane endpoint set` (some settings change, the others and the secrets stay, secrets
re-encrypted) and `tradelane endpoint schema` (the JSON Schema of each type, what `apply` takes),
both made from each endpoint type's settings and secrets models."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from core.crypto import decrypt_json
from core.endpoints.registry import endpoint_class, user_types
from tests.endpoint_servers.http_app import HttpApp
from tests.endpoints.contract import put

runner = CliRunner()
SECRET = "s3cret-9c2e71"
NEW_SECRET = "n3w-s3cret-40ad55"


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return " ".join(result.output.split())


def row(home: Path, name: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(config, decrypted secrets, the raw secrets column) of a stored endpoint."""
    with sqlite3.connect(home / "tradelane.db") as db:
        config, token = db.execute("select config, secrets from endpoint where name = ?", (name,)).fetchone()
    return json.loads(config), decrypt_json(token), token or ""


def test_set_changes_what_it_is_given_and_keeps_the_rest(home: Path) -> None:
    run("endpoint", "add", "lake", "--type", "s3", "--bucket", "b1", "--prefix", "in/", "--region",
        "eu-west-1", "--access-key-id", "AKIA1", "--secret-access-key", SECRET)  # fmt: skip
    out = run(
        "endpoint", "set", "lake", "--bucket", "b2", "--secret-access-key", NEW_SECRET, "--unset", "region"
    )
    assert "changed bucket, region, secret_access_key (secret)" in out and NEW_SECRET not in out
    config, secrets, raw = row(home, "lake")
    assert config == {"bucket": "b2", "prefix": "in/"}
    assert secrets == {"access_key_id": "AKIA1", "secret_access_key": NEW_SECRET}
    assert NEW_SECRET not in raw and SECRET not in raw  # encrypted again, the old one gone
    audit = json.loads(run("audit", "--action", "endpoint", "--json"))
    assert [e["action"] for e in audit] == ["endpoint.set", "endpoint.add"]
    assert audit[0]["detail"]["secrets"] == ["access_key_id", "secret_access_key"]
    assert NEW_SECRET not in json.dumps(audit)
    assert "nothing changed" in run("endpoint", "set", "lake", "--bucket", "b2")


def test_set_refuses_what_the_model_refuses_and_changes_nothing(home: Path) -> None:
    run("endpoint", "add", "lake", "--type", "s3", "--bucket", "b1")
    assert "--part-size" in run("endpoint", "set", "lake", "--part-size", "1024", ok=False)
    assert "--type s3 needs --bucket" in run("endpoint", "set", "lake", "--unset", "bucket", ok=False)
    assert "--path does not apply to --type s3" in run("endpoint", "set", "lake", "--path", "/x", ok=False)
    assert "no setting 'bukket' to unset" in run("endpoint", "set", "lake", "--unset", "bukket", ok=False)
    assert "no endpoint named 'nope'" in run("endpoint", "set", "nope", "--bucket", "x", ok=False)
    assert row(home, "lake")[0] == {"bucket": "b1"}


def test_set_on_an_http_endpoint_keeps_its_secret_url_and_headers_working(
    home: Path, http_app: HttpApp
) -> None:
    http_app.reset()
    http_app.auth = "key"
    http_app.api_keys = {SECRET}
    http_app.query_keys = {NEW_SECRET}
    url = f"{http_app.url}/echo?key={NEW_SECRET}&format=json"
    run("endpoint", "add", "api", "--type", "http", "--url", url, "--header", f"X-Api-Key: {SECRET}")
    assert row(home, "api")[0]["url"] == f"{http_app.url}/echo?key=***&format=***"
    # Making a parameter public re-masks the URL from the whole one the secrets keep.
    assert "changed public_params, url" in run("endpoint", "set", "api", "--public-param", "format")
    config, secrets, _ = row(home, "api")
    assert config["url"] == f"{http_app.url}/echo?key=***&format=json"
    assert secrets["urls"] == {"url": url} and secrets["headers"] == {"X-Api-Key": SECRET}
    from core.db import session_scope
    from core.endpoints import rows as store
    from tests.tenancy import home_scope

    with (
        session_scope() as session,
        store.open_row(store.require(session, home_scope(session), "api")) as endpoint,
    ):
        put(endpoint, "po.json", b"{}")  # both keys still sent
    assert (http_app.root / "po.json").exists()
    # --header and --secret-header replace the endpoint's headers, both kinds.
    run("endpoint", "set", "api", "--header", "X-Partner: acme")
    config, secrets, _ = row(home, "api")
    assert config["headers"] == {"X-Partner": "acme"} and "headers" not in secrets


def example_items() -> list[dict[str, Any]]:
    """Endpoints as the README's YAML declares them, one per type."""
    return yaml.safe_load(
        """
- {name: archive, type: file, path: /srv/archive}
- {name: lake, type: s3, bucket: inbound, prefix: acme/, endpoint_url: "http://127.0.0.1:9000",
   secrets: {access_key_id: AKIA, secret_access_key: s}}
- {name: blobs, type: azure, container: inbound, secrets: {connection_string: "AccountName=a;AccountKey=k"}}
- {name: partner, type: sftp, host: sftp.example, user: acme, host_key: "ssh-ed25519 AAAA", temp_name: none,
   secrets: {password: p}}
- {name: ftps, type: ftp, host: ftp.example, user: acme, tls: explicit, verify: false, secrets: {password: p}}
- {name: mail, type: email, smtp_host: smtp.example, to: [ap@example.test], from: hub@example.test,
   secrets: {user: hub, password: p}}
- {name: api, type: http, url: "https://erp.example/in", success_codes: [200, 201], public_params: [format],
   headers: {X-Partner: acme}, secrets: {bearer: t}}
- {name: to-globex, type: as2, partner: GLOBEX}
"""
    )


def test_schema_describes_each_type_as_apply_takes_it(home: Path) -> None:
    schemas = {
        one["properties"]["type"]["const"]: one for one in json.loads(run("endpoint", "schema"))["oneOf"]
    }
    assert (
        sorted(schemas)
        == sorted(user_types())
        == ["as2", "azure", "email", "file", "ftp", "http", "s3", "sftp"]
    )
    for item in example_items():
        schema = json.loads(run("endpoint", "schema", item["type"]))
        assert schema == schemas[item["type"]]
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(item, schema)
        with pytest.raises(jsonschema.ValidationError):  # an unknown key, as apply refuses it
            jsonschema.validate({**item, "bukket": "x"}, schema)
        cls = endpoint_class(item["type"])
        settings = set(cls.settings_model.field_keys())
        assert set(schema["properties"]) == {"name", "type", *settings} | (
            {"secrets"} if cls.secrets_model.field_keys() else set()
        )
        for key, prop in schema["properties"].get("secrets", {}).get("properties", {}).items():
            assert prop["writeOnly"] is True, (item["type"], key)
            strings = [prop, *prop.get("anyOf", []), prop.get("additionalProperties") or {}]
            assert all(one.get("format") == "password" for one in strings if one.get("type") == "string")
    assert schemas["s3"]["required"] == ["name", "type", "bucket"]
    assert schemas["ftp"]["properties"]["tls"]["enum"] == ["explicit", "implicit", "none"]
    assert "unknown type 'mailbox'" in run("endpoint", "schema", "mailbox", ok=False)


def test_add_shows_every_types_flags_and_fills_in_the_email_sender(home: Path) -> None:
    result = runner.invoke(app, ["endpoint", "add", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for panel, flag in (
        ("s3 settings", "--bucket"),
        ("sftp settings", "--host-key"),
        ("http settings", "--header"),
    ):
        assert panel in result.output and flag in result.output
    run("endpoint", "add", "m1", "--type", "email", "--smtp-host", "smtp.example", "--to", "ap@example.test",
        "--user", "hub@example.test", "--password", "pw-pw-pw")  # fmt: skip
    run("endpoint", "add", "m2", "--type", "email", "--smtp-host", "smtp.example", "--to", "ap@example.test")
    assert row(home, "m1")[0]["from"] == "hub@example.test"
    assert row(home, "m2")[0]["from"] == "tradelane@localhost"
    spec = home / "t.yaml"
    spec.write_text("endpoints:\n  - {name: m3, type: email, smtp_host: smtp.example, to: ap@example.test}\n")
    assert "needs 'from' to send" in run("apply", "-f", str(spec), ok=False)
    # Receiving only: no From is made up, and a login that is not an address is fine.
    run(
        "endpoint",
        "add",
        "m4",
        "--type",
        "email",
        "--imap-host",
        "imap.example",
        "--user",
        "box",
        "--password",
        "pw",
    )
    assert "from" not in row(home, "m4")[0]
    # An IMAP endpoint an earlier version stored with its login as From still loads.
    spec.write_text(
        "endpoints:\n  - {name: m5, type: email, imap_host: i.example, from: box,"
        " secrets: {user: b, password: p}}\n"
    )
    assert "endpoint m5: created" in run("apply", "-f", str(spec))
