"""Issue 10, item 11: an HTTP endpoint's secrets (query-string keys, credential headers, URL
userinfo) are kept encrypted, never shown, and scrubbed from whatever a server echoes back.

Against the real HTTP test app, with an endpoint configured the way an operator does it: the CLI
(in-process, on a throwaway home) and `apply -f`."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from typer.testing import CliRunner

from cli.main import app as cli
from core.crypto import decrypt_json
from core.endpoints.base import ConfigError
from core.endpoints.http import HttpEndpoint
from core.endpoints.http_settings import split_http_settings
from tests.endpoint_servers.http_app import HttpApp
from tests.endpoints.contract import put
from tests.tenancy import home_scope

runner = CliRunner()

QUERY_KEY = "q-key-7f3a9c41"
HEADER_KEY = "h-key-51d08e2b"
CUSTOM_SECRET = "c-secret-93aa07d6"
SECRETS = (QUERY_KEY, HEADER_KEY, CUSTOM_SECRET)


@pytest.fixture
def app(http_app: HttpApp) -> HttpApp:
    http_app.reset()
    http_app.auth = "key"
    http_app.api_keys = {HEADER_KEY}
    http_app.query_keys = {QUERY_KEY}
    return http_app


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(cli, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def echo_flags(app: HttpApp, query: str = "") -> list[str]:
    return [
        "--type",
        "http",
        "--url",
        f"{app.url}/echo?{query}key={QUERY_KEY}&format=json",
        "--public-param",
        "format",
        "--header",
        f"X-Api-Key: {HEADER_KEY}",
        "--header",
        "X-Partner: acme",
        "--secret-header",
        f"X-Custom: {CUSTOM_SECRET}",
    ]


def stored_endpoint(home: Path, name: str) -> HttpEndpoint:
    from core.db import session_scope
    from core.endpoints import rows as endpoint_rows

    with session_scope() as session:
        endpoint = endpoint_rows.open_row(endpoint_rows.require(session, home_scope(session), name))
    assert isinstance(endpoint, HttpEndpoint)
    return endpoint


def table_text(home: Path, sql: str) -> str:
    with sqlite3.connect(home / "tradelane.db") as db:
        return json.dumps(db.execute(sql).fetchall())


def assert_hidden(text: str, where: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{leaked} in {where}: {text[:2000]}"


def test_secret_settings_are_encrypted_masked_and_scrubbed_from_an_echo(home: Path, app: HttpApp) -> None:
    run("endpoint", "add", "echo", *echo_flags(app))

    # Stored: the config (shown, audited) holds none of them; the secrets hold each.
    [listed] = json.loads(run("endpoint", "list", "--json"))
    assert listed["config"]["url"] == f"{app.url}/echo?key=***&format=json"
    assert listed["config"]["headers"] == {"X-Partner": "acme"}
    assert listed["secrets"] == ["headers.X-Api-Key", "headers.X-Custom", "urls.url"]
    assert_hidden(json.dumps(listed), "endpoint list --json")
    assert_hidden(run("endpoint", "list"), "endpoint list")
    assert_hidden(table_text(home, "select config, secrets from endpoint"), "the endpoint table")
    assert_hidden(table_text(home, "select detail from auditevent"), "the audit table")

    # Sent: the server got both keys (it refuses a request without them) and the custom header.
    with stored_endpoint(home, "echo") as endpoint:
        put(endpoint, "po_850.json", b'{"po": 850}')
        assert (app.root / "po_850.json").read_bytes() == b'{"po": 850}'
        seen = app.requests[-1]
        assert f"key={QUERY_KEY}" in seen.path
        assert (seen.headers["x-api-key"], seen.headers["x-custom"]) == (HEADER_KEY, CUSTOM_SECRET)

        # Kept: the echoed answer says where the secrets were, never what they are.
        assert endpoint.last_response is not None
        answer = json.dumps(endpoint.last_response.to_dict())
        assert_hidden(answer, "the destination answer")
        request = json.loads(endpoint.last_response.body)["request"]
        assert request["target"] == "/echo?key=***&format=json"
        assert request["headers"]["X-Api-Key"] == "***"
        assert request["headers"]["X-Partner"] == "acme"


def test_an_echoing_refusal_does_not_put_secrets_in_the_error(home: Path, app: HttpApp) -> None:
    run("endpoint", "add", "echo500", *echo_flags(app, query="status=500&"), "--public-param", "status")
    with stored_endpoint(home, "echo500") as endpoint, pytest.raises(Exception) as caught:
        put(endpoint, "po.json", b"{}")
    assert "HTTP 500" in str(caught.value)
    assert "key=***" in str(caught.value)
    assert_hidden(str(caught.value), "the error")
    # endpoint test prints the failure too.
    app.auth = "bearer"  # now the key is wrong: the 401 body and the CLI line stay clean
    app.echo_auth = True
    output = run("endpoint", "test", "echo500", ok=False)
    assert "authentication" in output
    assert_hidden(output, "endpoint test")


def test_url_userinfo_beside_another_credential_is_refused(home: Path, app: HttpApp) -> None:
    url = f"http://acme:{CUSTOM_SECRET}@127.0.0.1:{app.port}/files"
    for other in (["--bearer", HEADER_KEY], ["--basic", f"acme:{HEADER_KEY}"]):
        output = run("endpoint", "add", "both", "--type", "http", "--url", url, *other, ok=False)
        assert "user:password@" in output and "give one way to authenticate" in output
        assert_hidden(output, "the refusal")
    output = run(
        "endpoint",
        "add",
        "both",
        "--type",
        "http",
        "--url",
        url,
        "--secret-header",
        "Authorization: x y",
        ok=False,
    )
    assert "Authorization header" in output
    assert json.loads(run("endpoint", "list", "--json")) == []  # nothing stored

    # Alone, userinfo is basic auth: it works, and is kept secret.
    app.auth = "basic"
    app.users["acme"] = (CUSTOM_SECRET, "rw")
    run("endpoint", "add", "userinfo", "--type", "http", "--url", url, "--list-url", url)
    [listed] = json.loads(run("endpoint", "list", "--json"))
    assert listed["config"]["url"] == f"{app.url}/files"
    assert listed["secrets"] == ["basic_password", "basic_user"]
    assert_hidden(table_text(home, "select detail from auditevent"), "the audit table")
    assert "reachable" in run("endpoint", "test", "userinfo")


def test_endpoint_refuses_userinfo_with_a_bearer_token_when_built_directly() -> None:
    with pytest.raises(ConfigError, match="give one way to authenticate"):
        HttpEndpoint({"url": "https://u:p4ss@api.example/in"}, {"bearer": "t0ken"})
    with pytest.raises(ConfigError, match="bearer/basic"):
        HttpEndpoint(
            {"url": "https://api.example/in"}, {"bearer": "t0ken", "headers": {"Authorization": "x"}}
        )


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("Proxy-Authorization", True),
        ("Cookie", True),
        ("X-Api-Key", True),
        ("Api-Key", True),
        ("X-Auth-Token", True),
        ("X-Client-Secret", True),
        ("Ocp-Apim-Subscription-Key", True),
        ("X-Partner", False),
        ("Accept", False),
    ],
)
def test_credential_headers_are_secret_by_name(name: str, secret: bool) -> None:
    config, secrets = split_http_settings({"url": "https://a.example/", "headers": {name: "v4lue"}}, {})
    assert (name in secrets.get("headers", {})) is secret
    assert (name in config.get("headers", {})) is not secret


def test_yaml_marks_headers_and_params_and_applies_idempotently(
    home: Path, app: HttpApp, tmp_path: Path
) -> None:
    spec = tmp_path / "tradelane.yaml"
    spec.write_text(
        f"""
endpoints:
  - name: api
    type: http
    url: "{app.url}/echo?key={QUERY_KEY}&format=json&page=1"
    public_params: [format, page]
    headers:
      X-Api-Key: {HEADER_KEY}
      X-Custom: {{value: {CUSTOM_SECRET}, secret: true}}
      X-Partner: {{value: acme, secret: false}}
"""
    )
    assert "endpoint api: created" in run("apply", "-f", str(spec))
    assert "endpoint api: unchanged" in run("apply", "-f", str(spec))
    [listed] = json.loads(run("endpoint", "list", "--json"))
    assert listed["config"]["url"] == f"{app.url}/echo?key=***&format=json&page=1"
    assert listed["config"]["headers"] == {"X-Partner": "acme"}
    assert_hidden(table_text(home, "select config from endpoint"), "the endpoint table")
    assert_hidden(table_text(home, "select detail from auditevent"), "the audit table")
    with stored_endpoint(home, "api") as endpoint:
        put(endpoint, "y.json", b"{}")
    assert (app.root / "y.json").exists()

    spec.write_text(
        spec.read_text().replace("X-Api-Key: " + HEADER_KEY, "X-Api-Key: {value: k, secret: false}")
    )
    assert "always secret" in run("apply", "-f", str(spec), ok=False)


def _migration_0009() -> Any:
    path = Path(__file__).parents[2] / "migrations" / "versions" / "0009_http_secrets_out_of_config.py"
    spec = importlib.util.spec_from_file_location("migration_0009", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_migration_0009_moves_stored_secrets_out_of_config(home: Path, app: HttpApp) -> None:
    from core.crypto import encrypt_json
    from core.db import get_engine, init_db

    init_db()
    # A row and an audit event as tradelane wrote them before: secrets in plain config.
    old_config = {
        "url": f"{app.url}/echo?key={QUERY_KEY}",
        "headers": {"X-Api-Key": HEADER_KEY, "X-Partner": "acme"},
    }
    conflicting = {"url": f"http://acme:{CUSTOM_SECRET}@127.0.0.1:{app.port}/files"}
    with sqlite3.connect(home / "tradelane.db") as db:
        account = db.execute("select id from account").fetchone()[0]
        for name, config, secrets in (
            ("old", old_config, None),
            ("clash", conflicting, encrypt_json({"bearer": "bearer-5e1f0c"})),
        ):
            db.execute(
                "insert into endpoint (account_id, name, type, config, secrets, created_at) "
                "values (?, ?, 'http', ?, ?, '2026-01-01 00:00:00')",
                (account, name, json.dumps(config), secrets),
            )
            detail = {"type": "http", "config": config, "secrets": []}
            db.execute(
                "insert into auditevent (account_id, actor, action, target, detail, at) "
                "values (?, 'cli', 'endpoint.add', ?, ?, '2026-01-01 00:00:00')",
                (account, name, json.dumps(detail)),
            )
    assert QUERY_KEY in table_text(home, "select config from endpoint")  # the "before"

    with get_engine().begin() as connection, Operations.context(MigrationContext.configure(connection)):
        _migration_0009().upgrade()

    assert_hidden(table_text(home, "select config from endpoint"), "the endpoint table")
    assert_hidden(table_text(home, "select detail from auditevent"), "the audit table")
    with sqlite3.connect(home / "tradelane.db") as db:
        token = db.execute("select secrets from endpoint where name = 'old'").fetchone()[0]
    assert decrypt_json(token)["headers"] == {"X-Api-Key": HEADER_KEY}
    # The moved endpoint still authenticates with both keys.
    with stored_endpoint(home, "old") as endpoint:
        put(endpoint, "migrated.json", b"{}")
    assert (app.root / "migrated.json").exists()
    # The clash is not resolved silently: the endpoint says what to fix.
    output = run("endpoint", "test", "clash", ok=False)
    assert "give one way to authenticate" in output
    assert_hidden(output, "endpoint test")
    assert_hidden(run("endpoint", "list", "--json"), "endpoint list --json")
