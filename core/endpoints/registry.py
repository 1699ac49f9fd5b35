"""Endpoint implementations by scheme, imported lazily so a missing optional library costs nothing."""

from __future__ import annotations

import importlib
from typing import Any

from core.endpoints.base import ConfigError, Endpoint

_IMPLEMENTATIONS: dict[str, str] = {
    "as2": "core.endpoints.as2:As2Endpoint",
    "azure": "core.endpoints.azure:AzureBlobEndpoint",
    "email": "core.endpoints.email:EmailEndpoint",
    "file": "core.endpoints.file:FileEndpoint",
    "ftp": "core.endpoints.ftp:FtpEndpoint",
    "http": "core.endpoints.http:HttpEndpoint",
    "mailbox": "core.endpoints.mailbox:MailboxEndpoint",
    "s3": "core.endpoints.s3:S3Endpoint",
    "sftp": "core.endpoints.sftp:SftpEndpoint",
}


def known_types() -> list[str]:
    return sorted(_IMPLEMENTATIONS)


def endpoint_class(scheme: str) -> type[Endpoint]:
    try:
        target = _IMPLEMENTATIONS[scheme]
    except KeyError:
        raise ConfigError(f"unknown endpoint type {scheme!r}; known: {', '.join(known_types())}") from None
    module_name, _, attr = target.partition(":")
    cls: type[Endpoint] = getattr(importlib.import_module(module_name), attr)
    return cls


def open_endpoint(scheme: str, config: dict[str, Any], secrets: dict[str, Any] | None = None) -> Endpoint:
    return endpoint_class(scheme)(config, secrets)
