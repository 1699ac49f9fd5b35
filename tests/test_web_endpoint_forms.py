"""The console's endpoint form (api/web/forms.py), generated from each endpoint type's JSON Schema:
for every registered type, a form filled in as a user would and posted back gives the same models
as the same settings given to the CLI or `apply`; bad values come back next to their fields, with
the models' own words; an edit form keeps what it is not told to change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from api.web import forms
from core.crypto import decrypt_json
from core.endpoints import rows as endpoint_rows
from core.endpoints.registry import endpoint_class, user_types
from core.endpoints.settings import SettingsError
from tests.web_form_reader import Page, read_page

_KEY = ed25519.Ed25519PrivateKey.generate()
HOST_KEY = (
    _KEY.public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)
PRIVATE_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    .decode()
)

# Every user type with every setting it has set to something other than its default (settings,
# secrets): what a user types into the form. A new type needs its line here (the test says so).
EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "as2": ({"partner": "acme-as2", "content_type": "application/edi-x12", "subject": "PO for acme"}, {}),
    "azure": (
        {
            "container": "inbound",
            "account_url": "https://acct.blob.core.windows.net",
            "account_name": "acct",
            "block_size": 1048576,
            "prefix": "in/",
            "concurrency": 2,
            "connect_timeout": 5,
            "read_timeout": 30.5,
            "max_attempts": 3,
        },
        {"account_key": "a2V5LWZvci1henVyZQ=="},
    ),
    "email": (
        {
            "smtp_host": "smtp.example.com",
            "smtp_port": 2525,
            "smtp_tls": "ssl",
            "from": "Tradelane <files@example.com>",
            "to": ["a@example.com", "b@example.com"],
            "subject": "{name} from tradelane",
            "body": "Hello,\n\nattached: {name} ({size} bytes).\n",
            "helo": "tradelane.example.com",
            "spool_dir": "/var/spool/tradelane",
            "imap_host": "imap.example.com",
            "imap_port": 1143,
            "imap_tls": "starttls",
            "mailbox": "Files",
            "search": "ALL",
            "after_pull": "delete",
            "timeout": 12.5,
            "verify": False,
            "cafile": "/etc/ssl/partner-ca.pem",
        },
        {"user": "mail-login-15", "password": "mail-pass-1", "smtp_password": "smtp-pass-2"},
    ),
    "file": ({"path": "/srv/tradelane/out"}, {}),
    "ftp": (
        {
            "host": "ftp.example.com",
            "user": "acme",
            "tls": "implicit",
            "port": 990,
            "path": "/in",
            "cafile": "/etc/ssl/ftp.pem",
            "verify": False,
            "passive": False,
            "timeout": 7.5,
            "temp_name": "prefix",
        },
        {"password": "ftp-pass-3"},
    ),
    "http": (
        {
            "url": "https://api.example.com/files?key=q-s3cret&v=2",
            "method": "PUT",
            "headers": {"X-Trace": "on"},
            "success_codes": [200, 201],
            "upload_mode": "multipart",
            "file_field": "upload",
            "path_in_url": True,
            "list_url": "https://api.example.com/list",
            "list_prefix_param": "folder",
            "download_url": "https://api.example.com/get/{path}",
            "delete_url": "https://api.example.com/del/{path}",
            "delete_method": "POST",
            "verify": "/etc/ssl/api-ca.pem",
            "timeout": 15,
            "spool_dir": "/var/spool/http",
            "follow_redirects": "same-host",
            "public_params": ["v"],
        },
        {"bearer": "bearer-tok-4", "headers": {"X-Api-Key": "api-key-5"}},
    ),
    "s3": (
        {
            "bucket": "lake",
            "endpoint_url": "http://127.0.0.1:9000",
            "region": "eu-west-1",
            "part_size": 10485760,
            "checksums": "when_required",
            "addressing_style": "path",
            "prefix": "in/",
            "concurrency": 8,
            "connect_timeout": 3,
            "read_timeout": 20,
            "max_attempts": 5,
        },
        {"access_key_id": "AKIAEXAMPLE6", "secret_access_key": "s3-secret-7", "session_token": "sess-8"},
    ),
    "sftp": (
        {
            "host_key": HOST_KEY,
            "host": "sftp.example.com",
            "user": "acme",
            "port": 2222,
            "path": "/in",
            "timeout": 9.5,
            "temp_name": "none",
        },
        {"password": "sftp-pass-9", "private_key": PRIVATE_KEY, "passphrase": "pp-10"},
    ),
}
# Settings one example cannot hold with the others (http pulls from a listing or from one URL).
MORE_EXAMPLES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "http",
        {
            "url": "https://user:pw-13@api.example.com/in",
            "pull_url": "https://api.example.com/export?token=t-14",
            "pull_name": "export.csv",
            "verify": False,
            "list_prefix_param": "",  # a blank that is a value (KeepBlank): none, not the default
        },
        {},
    ),
]
CASES = [(type_, *example) for type_, example in EXAMPLES.items()] + MORE_EXAMPLES
CASE_IDS = [f"{case[0]}-{n}" for n, case in enumerate(CASES)]


def typed(type_: str, settings: dict[str, Any], secrets: dict[str, Any]) -> dict[str, str]:
    """What a user types into the form's fields (by field name) to give these settings."""
    fields = forms.fields_of(type_, settings)
    for control in forms.controls_of(type_)[1]:
        if control.secret and control.key in secrets:
            fields[control.name] = forms._text_of(control.shape, secrets[control.key])
    return fields


def models(
    type_: str, settings: dict[str, Any], secrets: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    parsed, parsed_secrets = endpoint_class(type_).parse(settings, secrets)
    return parsed.stored(), parsed_secrets.stored()


def page(form: forms.EndpointForm) -> tuple[str, Page]:
    html = str(forms.render(form, csrf="c" * 64, action="/console/endpoints"))
    return html, read_page(html)


def test_every_user_type_has_an_example_and_no_field_falls_back_to_json() -> None:
    assert sorted(EXAMPLES) == user_types()
    for type_ in user_types():
        shapes = {c.name: c.shape for c in forms.controls_of(type_)[1]}
        assert "json" not in shapes.values(), (type_, shapes)
        given = {key for case in CASES if case[0] == type_ for key in case[1]}
        # The examples set every setting the type has (so the round trip covers each control).
        assert {f"setting.{k}" for k in given} == {n for n in shapes if n.startswith("setting.")}, type_


@pytest.mark.parametrize(("type_", "settings", "secrets"), CASES, ids=CASE_IDS)
def test_a_new_form_filled_in_and_posted_gives_the_same_models(
    type_: str, settings: dict[str, Any], secrets: dict[str, Any]
) -> None:
    html, blank = page(forms.build(type_))
    for key in secrets:
        assert f'name="secret.{key}"' in html
    posted = blank.submit({"name": f"{type_}-out", **typed(type_, settings, secrets)})
    submitted = forms.parse_form(type_, posted)
    assert submitted.name == f"{type_}-out"
    assert submitted.clear == []
    assert models(type_, submitted.settings, submitted.secrets) == models(type_, settings, secrets)


@pytest.mark.parametrize(("type_", "settings", "secrets"), CASES, ids=CASE_IDS)
def test_a_stored_endpoints_form_shows_its_settings_and_posts_them_back_unchanged(
    type_: str, settings: dict[str, Any], secrets: dict[str, Any]
) -> None:
    stored, stored_secrets = models(type_, settings, secrets)
    form = forms.build(
        type_, {"name": "x", **forms.fields_of(type_, stored)}, editing=True, secret_names=stored_secrets
    )
    html, shown = page(form)
    posted = shown.submit({})  # nothing typed: every secret left blank
    submitted = forms.parse_form(type_, posted)
    assert submitted.secrets == {}  # blank secrets are not sent: they are kept
    # The settings as shown parse to the stored ones (with the stored secrets: http's masked URL).
    assert models(type_, submitted.settings, stored_secrets)[0] == stored
    for value in _secret_strings(stored_secrets):
        assert value not in html


def _secret_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secret_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _secret_strings(v)]
    return [value] if isinstance(value, str) and len(value) >= 6 else []


def test_each_control_is_labelled_and_its_help_is_tied_to_it() -> None:
    for type_ in user_types():
        _, shown = page(forms.build(type_, editing=True, secret_names=["password"]))
        for field in shown.fields:
            if field.type in ("hidden", "checkbox"):
                continue
            assert field.attrs["id"] in shown.labels_for, (type_, field.name)
            for described in field.attrs.get("aria-describedby", "").split():
                assert described in shown.ids, (type_, field.name, described)
        assert len(set(shown.ids)) == len(shown.ids), type_  # ids are unique


def test_required_settings_are_marked_required() -> None:
    _, shown = page(forms.build("sftp"))
    named = shown.by_name()
    for key in ("host", "user", "host_key"):
        assert "required" in named[f"setting.{key}"].attrs
    assert "required" not in named["setting.port"].attrs
    assert named["setting.host_key"].tag == "textarea"  # several keys, one per line
    assert named["secret.private_key"].tag == "textarea"  # a PEM key keeps its lines
    assert named["setting.port"].attrs["type"] == "number"
    assert (named["setting.port"].attrs["min"], named["setting.port"].attrs["max"]) == ("1", "65535")


def test_choices_offer_the_default_first_and_blank_means_the_default() -> None:
    _, shown = page(forms.build("ftp"))
    named = shown.by_name()
    assert named["setting.tls"].options == ["", "explicit", "implicit", "none"]
    assert named["setting.verify"].options == ["", "true", "false"]
    assert "(default: yes)" in str(forms.render(forms.build("ftp")))
    submitted = forms.parse_form("ftp", shown.submit({"name": "f", "setting.host": "h", "setting.user": "u"}))
    assert submitted.settings == {"host": "h", "user": "u"}  # every blank select and input: unset


def test_bad_values_come_back_next_to_their_fields_with_the_models_words() -> None:
    _, blank = page(forms.build("sftp"))
    posted = blank.submit(
        {
            "name": "bad",
            "setting.host": "sftp.example.com",
            "setting.port": "70000",
            "setting.timeout": "soon",
            "setting.host_key": "not a key",
            "secret.password": "typed-pass-11",
        }
    )
    submitted = forms.parse_form("sftp", posted)
    with pytest.raises(SettingsError) as refused:
        endpoint_class("sftp").parse(submitted.settings, submitted.secrets)
    form = forms.build("sftp", posted, error=refused.value)
    by_key = {c.name: c for c in form.controls}
    assert by_key["setting.port"].errors == [
        "sftp endpoint 'port': input should be less than or equal to 65535"
    ]
    assert by_key["setting.timeout"].errors and "valid number" in by_key["setting.timeout"].errors[0]
    assert by_key["setting.host_key"].errors and "host key" in by_key["setting.host_key"].errors[0]
    assert by_key["setting.user"].errors == ["sftp endpoint needs 'user'"]
    html, shown = page(form)
    named = shown.by_name()
    # The values given are shown again (so only the bad ones need retyping), the secret is not.
    assert named["setting.port"].value == "70000" and named["setting.host"].value == "sftp.example.com"
    assert named["secret.password"].value == "" and "typed-pass-11" not in html
    assert named["setting.port"].attrs["aria-invalid"] == "true"
    assert "f-setting-port-error" in named["setting.port"].attrs["aria-describedby"].split()


def test_a_problem_of_no_single_field_is_shown_at_the_top() -> None:
    _, blank = page(forms.build("sftp"))
    posted = blank.submit(
        {"name": "s", "setting.host": "h", "setting.user": "u", "setting.host_key": HOST_KEY}
    )
    submitted = forms.parse_form("sftp", posted)
    with pytest.raises(SettingsError) as refused:
        endpoint_class("sftp").parse(submitted.settings, submitted.secrets)
    form = forms.build("sftp", posted, error=refused.value)
    assert form.errors == ["sftp endpoint needs a 'password' or a 'private_key' secret"]
    assert "sftp endpoint needs a &#39;password&#39; or a &#39;private_key&#39; secret" in str(
        forms.render(form)
    )


def test_unreadable_text_is_refused_before_the_models_see_it() -> None:
    _, blank = page(forms.build("http"))
    posted = blank.submit(
        {
            "name": "h",
            "setting.url": "https://x.example",
            "setting.headers": "X-Trace on",
            "setting.verify": "file",
        }
    )
    with pytest.raises(SettingsError) as refused:
        forms.parse_form("http", posted)
    form = forms.build("http", posted, error=refused.value)
    by_key = {c.name: c for c in form.controls}
    assert by_key["setting.headers"].errors == ["http endpoint 'headers': write one 'Name: value' per line"]
    assert by_key["setting.verify"].errors == [
        "http endpoint 'verify': give the file's path, or choose yes or no"
    ]


def _stored(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from core.db import session_scope
    from core.tenancy import scope_for_cli

    with session_scope() as session:
        row = endpoint_rows.get(session, scope_for_cli(session, "home"), name)
        assert row is not None
        return dict(row.config), decrypt_json(row.secrets)


def _edit(name: str, fields: dict[str, str], ticked: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Open the stored endpoint's edit form, type `fields`, tick `ticked`, post it: what changed."""
    from core.db import session_scope
    from core.tenancy import scope_for_cli

    with session_scope() as session:
        scope = scope_for_cli(session, "home")
        row = endpoint_rows.require(session, scope, name)
        shown = forms.fields_of(row.type, endpoint_rows.shown_settings(row))
        form = forms.build(
            row.type, {"name": name, **shown}, editing=True, secret_names=endpoint_rows.row_secret_names(row)
        )
        html, page_ = page(form)
        for value in _secret_strings(decrypt_json(row.secrets)):
            assert value not in html
        submitted = forms.parse_form(row.type, page_.submit(fields, ticked))
        changes, secret_changes, unset = forms.edit_changes(row, submitted)
        return endpoint_rows.set_settings(session, scope, name, changes, secret_changes, unset)


def _add(
    type_: str, name: str, settings: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> None:
    from core.db import init_db, session_scope
    from core.tenancy import scope_for_cli

    init_db()
    if settings is None:
        settings, secrets = EXAMPLES[type_]
    with session_scope() as session:
        endpoint_rows.add(session, scope_for_cli(session, "home"), name, type_, settings, secrets)


def test_editing_nothing_changes_nothing(home: Path) -> None:
    for n, (type_, settings, secrets) in enumerate(CASES):
        _add(type_, f"{type_}-{n}", settings, secrets)
        before = _stored(f"{type_}-{n}")
        assert _edit(f"{type_}-{n}", {}) == [], type_
        assert _stored(f"{type_}-{n}") == before, type_


def test_a_blank_that_is_a_value_is_said_with_its_box(home: Path) -> None:
    _add(
        "http", "lister", {"url": "https://api.example.com/in", "list_url": "https://api.example.com/ls"}, {}
    )
    assert _edit("lister", {}, ticked={"setting.list_prefix_param.empty"}) == ["list_prefix_param"]
    assert _stored("lister")[0]["list_prefix_param"] == ""
    assert _edit("lister", {}) == []  # shown ticked, posted ticked: kept
    assert _edit("lister", {"setting.list_prefix_param": "dir"}) == ["list_prefix_param"]  # text wins
    assert _stored("lister")[0]["list_prefix_param"] == "dir"
    assert (
        _edit("lister", {"setting.list_prefix_param": ""}, ticked={"setting.list_prefix_param.empty"}) != []
    )
    # Untick it: blank is then the default again.
    from core.db import session_scope
    from core.tenancy import scope_for_cli

    with session_scope() as session:
        row = endpoint_rows.require(session, scope_for_cli(session, "home"), "lister")
        fields = forms.fields_of("http", endpoint_rows.shown_settings(row))
        assert fields["setting.list_prefix_param.empty"] == "1"
        submitted = forms.parse_form("http", {k: v for k, v in fields.items() if not k.endswith(".empty")})
        assert forms.edit_changes(row, submitted)[2] == ["list_prefix_param"]


def test_an_edit_changes_what_it_types_keeps_blank_secrets_and_clears_ticked_ones(home: Path) -> None:
    _add("s3", "lake")
    changed = _edit(
        "lake",
        {"setting.region": "", "setting.bucket": "lake-2", "secret.secret_access_key": "s3-new-12"},
        ticked={"clear.session_token"},
    )
    assert changed == ["bucket", "region", "secret_access_key (secret)", "session_token (secret)"]
    config, secrets = _stored("lake")
    assert config["bucket"] == "lake-2" and "region" not in config  # blank: back to the default
    assert secrets == {"access_key_id": "AKIAEXAMPLE6", "secret_access_key": "s3-new-12"}


def test_an_http_edit_keeps_the_masked_url_and_the_secret_headers(home: Path) -> None:
    _add("http", "api")
    config, secrets = _stored("api")
    assert config["url"] == "https://api.example.com/files?key=***&v=2"
    # Plain headers changed: the secret header (a key both models have) is kept, not dropped.
    assert _edit("api", {"setting.headers": "X-Trace: off\nX-Other: 1"}) == ["headers"]
    config_after, secrets_after = _stored("api")
    assert config_after["headers"] == {"X-Trace": "off", "X-Other": "1"}
    assert secrets_after == secrets  # the whole URL and X-Api-Key kept
    assert config_after["url"] == config["url"]


def test_the_schema_marks_the_settings_of_several_lines() -> None:
    from core.endpoints.settings import MULTILINE, json_schema

    marked = set()
    for type_ in user_types():
        cls = endpoint_class(type_)
        schema = json_schema(type_, cls.settings_model, cls.secrets_model)
        props = {**schema["properties"], **schema["properties"].get("secrets", {}).get("properties", {})}
        marked |= {f"{type_}.{key}" for key, prop in props.items() if prop.get(MULTILINE) is True}
    assert marked == {"sftp.host_key", "sftp.private_key", "email.body"}
