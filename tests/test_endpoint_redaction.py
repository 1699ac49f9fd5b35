"""What each endpoint type scrubs from its errors and answers comes from its secrets model, through
one function (`secret_values` in core/endpoints/base.py): every secret field but login names, and
the pieces a secret holds that can show up alone."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from core.endpoints.base import secret_values
from core.endpoints.registry import endpoint_class

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzOCWsUF8YpdPvplvmF5YuPGG9Klq7FZ87mxvC3Ri0G"
BASIC = base64.b64encode(b"api-user:api-pass").decode()


@pytest.mark.parametrize(
    ("type_", "config", "secrets", "hidden"),
    [
        (
            "s3",
            {"bucket": "b"},
            {"access_key_id": "AKIA1", "secret_access_key": "sak-one"},
            {"AKIA1", "sak-one"},
        ),
        (
            "azure",
            {"container": "in-box"},
            {"connection_string": "AccountName=acct;AccountKey=a2V5;SharedAccessSignature=sv=1&sig=ab%2Bc"},
            {
                "AccountName=acct;AccountKey=a2V5;SharedAccessSignature=sv=1&sig=ab%2Bc",
                "a2V5",
                "sv=1&sig=ab%2Bc",
                "ab%2Bc",
                "ab+c",
            },
        ),
        ("azure", {"container": "in-box", "account_name": "acct"}, {"account_key": "a2V5"}, {"a2V5"}),
        (
            "sftp",
            {"host": "h", "user": "u", "host_key": HOST_KEY},
            {"password": "pw-one", "private_key": "KEY TEXT", "passphrase": "pp-one"},
            {"pw-one", "KEY TEXT", "pp-one"},
        ),
        ("ftp", {"host": "h", "user": "u"}, {"password": "pw-one"}, {"pw-one"}),
        (
            "email",
            {"imap_host": "imap.example"},
            {"user": "hub", "password": "pw-one", "imap_user": "box", "imap_password": "pw-two"},
            {"pw-one", "pw-two"},  # login names stay: they name mailboxes in URIs
        ),
        (
            "http",
            {"url": "https://api.example/in?key=K3Y-9&format=json", "public_params": ["format"]},
            {"basic_user": "api-user", "basic_password": "api-pass", "headers": {"X-Api-Key": "H3ADER"}},
            {"api-pass", "H3ADER", f"Basic {BASIC}", BASIC, "K3Y-9"},
        ),
        (
            "http",
            {"url": "https://KEYONLY@api.example/in"},
            {},
            {"KEYONLY", base64.b64encode(b"KEYONLY:").decode(), "Basic S0VZT05MWTo="},
        ),
        ("file", {"path": "/srv"}, {}, set()),
    ],
)
def test_secret_values_come_from_the_secrets_model(
    type_: str, config: dict[str, Any], secrets: dict[str, Any], hidden: set[str]
) -> None:
    endpoint = endpoint_class(type_)(config, secrets)
    assert secret_values(endpoint.settings, endpoint.secrets) == hidden
    assert endpoint.secret_values() == hidden
    for value in hidden:
        assert value not in endpoint.scrubber.text(f"said: {value}")
    # Shown settings hold none of them; a repr of the secrets shows names only.
    assert all(v not in repr(endpoint.settings) and v not in repr(endpoint.secrets) for v in hidden)
