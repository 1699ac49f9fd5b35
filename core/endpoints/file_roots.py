"""Where an account's users may point `file` endpoints (and any other local path a setting takes):
the account's allowed roots.

A `file` endpoint reads and writes a folder of this machine as tradelane's own user, so an account
user (admin API, console) may only name a folder inside one of its account's roots
(`TRADELANE_FILE_ENDPOINT_ROOTS`, os.pathsep-separated, `{account}` standing for the account's
name; default `<home>/files/<account>`, beside the mailboxes and keys, never over them). The
instance operator (the host's CLI and `apply`) may name any folder. The same holds for every
other setting marked `LocalPath` (a CA file to trust, an http endpoint's spool folder): an account
user may not make tradelane read or write a file of the machine outside its roots.

The check resolves symlinks, when the endpoint is added or changed and again whenever it is
opened: a folder inside a root that has since become a link to elsewhere is refused then too.
At open time the rule is "a path written inside a root must resolve inside it", so an operator's
endpoint elsewhere (the CLI's) opens as before.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.config import Settings, get_settings
from core.endpoints.errors import ConfigError
from core.endpoints.file import FileSettings
from core.endpoints.settings import EndpointSettings, LocalPath
from core.errors import Invalid
from core.tenancy import Scope

ACCOUNT_PLACEHOLDER = "{account}"
DEFAULT_FOLDER = "files"  # <home>/files/<account>
SETTING = "TRADELANE_FILE_ENDPOINT_ROOTS"


class OutsideRoots(ConfigError, Invalid):
    """A file endpoint's folder outside the account's allowed roots (400 on every surface)."""


def roots_for(account_name: str, settings: Settings | None = None) -> list[Path]:
    """The folders (absolute, as configured) an account's users may put file endpoints in."""
    settings = settings or get_settings()
    configured = [part.strip() for part in settings.file_endpoint_roots.split(os.pathsep) if part.strip()]
    if not configured:
        return [settings.home_dir / DEFAULT_FOLDER / account_name]
    return [Path(part.replace(ACCOUNT_PLACEHOLDER, account_name)).expanduser() for part in configured]


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _really_within(path: str, root: Path) -> bool:
    """Whether `path`, symlinks resolved, is `root` (resolved) or inside it."""
    return _within(os.path.realpath(path), os.path.realpath(root))


def _refusal(what: str, path: str, roots: list[Path]) -> OutsideRoots:
    named = os.pathsep.join(os.path.realpath(root) for root in roots)
    return OutsideRoots(
        f"{what} {path!r} is outside this account's allowed folders: {named} "
        f"(symlinks resolved; the instance's operator sets them with {SETTING})"
    )


def local_paths(settings: EndpointSettings) -> dict[str, str]:
    """The settings that name a local file or folder (marked `LocalPath`) and are set: by name."""
    found: dict[str, str] = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if any(isinstance(item, LocalPath) for item in field.metadata) and isinstance(value, str) and value:
            found[name] = value
    return found


def _what(settings: EndpointSettings, name: str) -> str:
    return (
        "file endpoint path" if isinstance(settings, FileSettings) and name == "path" else f"setting {name}"
    )


def check_added(scope: Scope, settings: EndpointSettings) -> None:
    """Refuse a local path an account user gives outside its account's roots; the operator may give any."""
    if scope.role == "instance":
        return
    roots = roots_for(scope.account_name)
    for name, path in local_paths(settings).items():
        if not any(_really_within(os.path.expanduser(path), root) for root in roots):
            raise _refusal(_what(settings, name), path, roots)


def check_opened(account_name: str, settings: EndpointSettings) -> None:
    """Refuse to open a local path written inside one of the account's roots that no longer
    resolves inside it (a link put there after the check at add time)."""
    for name, path in local_paths(settings).items():
        written = os.path.abspath(os.path.expanduser(path))
        for root in roots_for(account_name):
            lexical = {os.path.abspath(root), os.path.realpath(root)}
            if any(_within(written, form) for form in lexical) and not _really_within(written, root):
                raise _refusal(_what(settings, name), path, roots_for(account_name))
