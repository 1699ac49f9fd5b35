"""`tradelane endpoint add` flags → an endpoint's stored config and its encrypted secrets, per type."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

Split = tuple[dict[str, Any], dict[str, Any]]


def _need(given: dict[str, Any], type_: str, *flags: str) -> None:
    missing = [f"--{f.replace('_', '-')}" for f in flags if not given.get(f)]
    if missing:
        raise typer.BadParameter(f"--type {type_} needs {' '.join(missing)}")


def _pick(given: dict[str, Any], *keys: str, rename: dict[str, str] | None = None) -> dict[str, Any]:
    rename = rename or {}
    return {rename.get(k, k): given[k] for k in keys if given.get(k) is not None}


def _file(g: dict[str, Any]) -> Split:
    _need(g, "file", "path")
    return {"path": str(Path(g["path"]).expanduser().resolve())}, {}


def _s3(g: dict[str, Any]) -> Split:
    _need(g, "s3", "bucket")
    return _pick(g, "bucket", "prefix", "endpoint_url", "region", "checksums"), _pick(
        g, "access_key_id", "secret_access_key"
    )


def _azure(g: dict[str, Any]) -> Split:
    _need(g, "azure", "container")
    if not (g.get("connection_string") or g.get("account_key") or g.get("sas_token")):
        raise typer.BadParameter("--type azure needs --connection-string, --account-key or --sas-token")
    config = _pick(g, "container", "prefix", "account_url", "account_name")
    return config, _pick(g, "connection_string", "account_key", "sas_token")


def _sftp(g: dict[str, Any]) -> Split:
    _need(g, "sftp", "host", "user")
    if not (g.get("password") or g.get("key")):
        raise typer.BadParameter("--type sftp needs --password or --key FILE")
    config = _pick(g, "host", "port", "user", "path", "host_key", "temp_name")
    secrets = _pick(g, "password", "passphrase")
    if g.get("key"):
        secrets["private_key"] = Path(g["key"]).expanduser().read_text()
    return config, secrets


def _ftp(g: dict[str, Any]) -> Split:
    _need(g, "ftp", "host", "user", "password")
    config = _pick(g, "host", "port", "user", "path", "tls", "cafile", "temp_name")
    if config.get("cafile"):
        config["cafile"] = str(Path(config["cafile"]).expanduser().resolve())
    if g.get("insecure"):
        config["verify"] = False
    return config, _pick(g, "password")


def _email(g: dict[str, Any]) -> Split:
    if not (g.get("smtp_host") or g.get("imap_host")):
        raise typer.BadParameter("--type email needs --smtp-host (to send) and/or --imap-host (to poll)")
    if g.get("smtp_host") and not g.get("to"):
        raise typer.BadParameter("--type email with --smtp-host needs --to ADDRESS")
    config = _pick(
        g,
        "smtp_host",
        "smtp_port",
        "imap_host",
        "imap_port",
        "imap_tls",
        "mailbox",
        "search",
        "subject",
        "cafile",
    )
    if g.get("taken"):
        config["after_pull"] = g["taken"]
    if g.get("tls"):
        config["smtp_tls"] = g["tls"]
    if g.get("to"):
        config["to"] = list(g["to"])
    config["from"] = g.get("sender") or g.get("user") or "tradelane@localhost"
    if g.get("insecure"):
        config["verify"] = False
    return config, _pick(g, "user", "password")


def _header_options(given: list[str] | None, flag: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for header in given or []:
        key, sep, value = header.partition(":")
        if not sep or not key.strip():
            # Not echoed: the value may be a credential.
            raise typer.BadParameter(f"{flag} needs 'Name: value' (a name, a colon, the value)")
        headers[key.strip()] = value.strip()
    return headers


def _http(g: dict[str, Any]) -> Split:
    """Secret-bearing settings (auth headers, query values, user:password@) are moved into the
    secrets by the store (core/endpoints/http_settings.py), whichever way the endpoint is added."""
    _need(g, "http", "url")
    config = _pick(g, "url", "method", "list_url", "pull_url", "upload_mode", "follow_redirects")
    if g.get("success_code"):
        config["success_codes"] = sorted(set(g["success_code"]))
    if headers := _header_options(g.get("header"), "--header"):
        config["headers"] = headers
    if g.get("public_param"):
        config["public_params"] = sorted(set(g["public_param"]))
    if g.get("insecure"):
        config["verify"] = False
    elif g.get("cafile"):
        config["verify"] = str(Path(g["cafile"]).expanduser().resolve())
    secrets: dict[str, Any] = {}
    if secret_headers := _header_options(g.get("secret_header"), "--secret-header"):
        secrets["headers"] = secret_headers
    if g.get("bearer"):
        secrets["bearer"] = g["bearer"]
    if g.get("basic"):
        user, sep, password = g["basic"].partition(":")
        if not sep:
            raise typer.BadParameter("--basic needs USER:PASSWORD")
        secrets.update(basic_user=user, basic_password=password)
    return config, secrets


def _as2(g: dict[str, Any]) -> Split:
    _need(g, "as2", "partner")
    return _pick(g, "partner", "subject"), {}


PARSERS: dict[str, Callable[[dict[str, Any]], Split]] = {
    "file": _file,
    "s3": _s3,
    "azure": _azure,
    "sftp": _sftp,
    "ftp": _ftp,
    "email": _email,
    "http": _http,
    "as2": _as2,
}


def endpoint_options(type_: str, given: dict[str, Any]) -> Split:
    """Split CLI options into stored config and encrypted secrets for one endpoint type."""
    parser = PARSERS.get(type_)
    if parser is None:
        raise typer.BadParameter(f"unknown --type {type_!r}; known: {', '.join(sorted(PARSERS))}")
    return parser(given)
