"""Endpoint types by scheme, imported lazily so a missing optional library costs nothing.

Like fsspec's registry: a type is a name and "module:Class". A built-in type is one module in
core/endpoints/ plus one line in `_BUILT_IN`. Another package adds its own with an entry point in
the group `tradelane.endpoints` (`memory = "mypkg.memory:MemoryEndpoint"`), which every tradelane
process finds; `register()` adds one to this process only (tests, embedding). Everything a type
offers (CLI flags, YAML keys, JSON Schema, listing, redaction) comes from its class's
`settings_model` and `secrets_model` (core/endpoints/settings.py), so nothing else needs to know it.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from core.endpoints.base import ConfigError, Endpoint

ENTRY_POINT_GROUP = "tradelane.endpoints"

_BUILT_IN: dict[str, str] = {
    "as2": "core.endpoints.as2:As2Endpoint",
    "azure": "core.endpoints.azure:AzureBlobEndpoint",
    "email": "core.endpoints.email:EmailEndpoint",
    "file": "core.endpoints.file:FileEndpoint",
    "ftp": "core.endpoints.ftp:FtpEndpoint",
    "http": "core.endpoints.http:HttpEndpoint",
    "mailbox": "core.endpoints.mailbox:MailboxEndpoint",
    "peer": "core.endpoints.peer:PeerEndpoint",
    "s3": "core.endpoints.s3:S3Endpoint",
    "sftp": "core.endpoints.sftp:SftpEndpoint",
}
_registered: dict[str, str | type[Endpoint]] = {}


@cache
def _installed() -> dict[str, str]:
    """Types other packages declare (entry points), read once per process."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _table() -> dict[str, str | type[Endpoint]]:
    return {**_installed(), **_BUILT_IN, **_registered}


def _target(scheme: str) -> str | type[Endpoint]:
    """`_table()[scheme]` (KeyError if unknown), without reading the installed types when a
    registered or built-in one wins anyway: every flow run opens its endpoints in a process of
    its own, and scanning every distribution's entry points there is its first open's main cost."""
    if scheme in _registered:
        return _registered[scheme]
    if scheme in _BUILT_IN:
        return _BUILT_IN[scheme]
    return _installed()[scheme]


def register(scheme: str, target: str | type[Endpoint], *, replace: bool = False) -> None:
    """Make `scheme` name an endpoint type in this process: an Endpoint class, or "module:Class"
    imported when first used. Refused for a name already taken, unless `replace`."""
    if not scheme or not scheme.replace("-", "").replace("_", "").isalnum() or not scheme.islower():
        raise ValueError(f"an endpoint type is a lowercase name, not {scheme!r}")
    if scheme in _table() and not replace:
        raise ValueError(f"endpoint type {scheme!r} is already registered")
    _registered[scheme] = target
    endpoint_class.cache_clear()


def unregister(scheme: str) -> None:
    """Forget a type `register()` added (built-in and installed types stay)."""
    _registered.pop(scheme, None)
    endpoint_class.cache_clear()


def refresh() -> None:
    """Read the installed types (entry points) again: after a package was installed meanwhile."""
    _installed.cache_clear()
    endpoint_class.cache_clear()


def known_types() -> list[str]:
    """Every type's name, internal ones (a partner's mailbox) included."""
    return sorted(_table())


def user_types() -> list[str]:
    """The types an operator adds (`endpoint add --type`, `endpoint schema`): not internal ones."""
    return [name for name in known_types() if not endpoint_class(name).internal]


@cache
def endpoint_class(scheme: str) -> type[Endpoint]:
    try:
        target = _target(scheme)
    except KeyError:
        raise ConfigError(f"unknown endpoint type {scheme!r}; known: {', '.join(user_types())}") from None
    cls: type[Endpoint]
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
    else:
        cls = target
    if getattr(cls, "scheme", None) != scheme:
        raise ConfigError(
            f"endpoint type {scheme!r} is registered as {target}, whose scheme is not {scheme!r}"
        )
    return cls


def open_endpoint(scheme: str, config: dict[str, Any], secrets: dict[str, Any] | None = None) -> Endpoint:
    return endpoint_class(scheme)(config, secrets)
