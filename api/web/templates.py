"""The one Jinja2 environment of the web pages (portal, console, login, accept page), and `static_url`.

Every value is escaped (autoescape) and a missing one is an error (StrictUndefined), so a
template cannot print a name unescaped or silently print nothing. `static_url("web/app.css")` names
a file under api/static/ with `?v=<first 8 hex digits of its SHA-256>`, computed once per process, so
a changed file gets a new URL.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from api.docs import STATIC_DIR, STATIC_URL

TEMPLATES_DIR = Path(__file__).parent / "templates"
PRODUCT = "tradelane"


@functools.cache
def static_url(name: str) -> str:
    """The URL of api/static/<name>, versioned by its content; KeyError-free: a missing file is a bug."""
    path = STATIC_DIR / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return f"{STATIC_URL}/{name}?v={digest}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tradelane")
    except PackageNotFoundError:
        return "dev"


environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,  # every value is escaped; the templates mark nothing safe
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.globals.update(static_url=static_url, product=PRODUCT, version=_version())


def render(template: str, **context: Any) -> str:
    return environment.get_template(template).render(**context)
