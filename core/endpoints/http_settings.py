"""Which settings of an HTTP endpoint are secret, and moving them out of its plain config.

An endpoint's config is shown (`tradelane endpoint list`) and recorded in the audit table; its
secrets are encrypted at rest and never shown. For the http type:

* A header is secret when it is marked so (`--secret-header`, `{value: ..., secret: true}` in YAML,
  or given under `secrets.headers`) or when its name is one that carries credentials:
  Authorization, Proxy-Authorization, Cookie, X-Api-Key, Api-Key, or any name containing "token",
  "secret", "key" or "password".
* Every query-string value of `url`, `list_url`, `pull_url`, `download_url` and `delete_url` is
  secret (API keys travel there), unless its parameter is named in `public_params`. The config
  keeps the URL with `***` for each secret value (`?key=***`); the secrets keep the whole URL.
* `user:password@` in a URL is basic auth: it moves to `basic_user`/`basic_password`, and is refused
  together with a bearer token, basic auth or an Authorization header (one of them would silently
  win).

Splitting is idempotent (a split config splits to itself), so the store runs it on every write,
the endpoint runs it when built (rows stored before this existed work unchanged), and migration
0009 runs it once over stored rows so no plaintext secret stays in a config column.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from core.endpoints.base import ConfigError
from core.redact import MASK

URL_KEYS = ("url", "list_url", "pull_url", "download_url", "delete_url")
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"})
CREDENTIAL_WORDS = ("token", "secret", "key", "password")
PATH_PLACEHOLDER = "{path}"


def is_secret_header(name: str) -> bool:
    """Whether a header of this name always carries a credential, marked or not."""
    lowered = name.strip().lower()
    return lowered in CREDENTIAL_HEADERS or any(word in lowered for word in CREDENTIAL_WORDS)


def _query_parts(query: str) -> list[tuple[str, str | None]]:
    """(raw name, raw value or None for a bare `?flag`) for each `&`-separated part."""
    parts: list[tuple[str, str | None]] = []
    for part in query.split("&"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        parts.append((name, value if sep else None))
    return parts


def _is_secret_part(name: str, value: str | None, public: frozenset[str]) -> bool:
    if unquote_plus(name) in public:
        return False
    if value is None:  # a bare part (`?APIKEY`) is a value in itself
        return bool(name) and PATH_PLACEHOLDER not in name
    return bool(value) and PATH_PLACEHOLDER not in value


def mask_url(url: str, public: frozenset[str] = frozenset()) -> str:
    """`url` with each query value not named in `public` replaced by `***`."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    shown = []
    for name, value in _query_parts(parts.query):
        if _is_secret_part(name, value, public):
            shown.append(MASK if value is None else f"{name}={MASK}")
        else:
            shown.append(name if value is None else f"{name}={value}")
    return urlunsplit(parts._replace(query="&".join(shown)))


def query_secrets(url: str, public: frozenset[str] = frozenset()) -> list[str]:
    """The secret query values of `url`, raw and decoded (both can show up in what a server echoes)."""
    found: list[str] = []
    for name, value in _query_parts(urlsplit(url).query):
        if _is_secret_part(name, value, public):
            raw = name if value is None else value
            found += [raw, unquote_plus(raw), unquote(raw)]
    return found


def url_secrets(url: str) -> list[str]:
    """Every part of `url` that can hold a credential: each query value and the userinfo."""
    _, userinfo = _take_userinfo(url)
    return query_secrets(url) + [part for part in userinfo or () if part]


def _public_params(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("http endpoint 'public_params' must be a list of query parameter names")
    return frozenset(value)


def _header_items(value: Any, where: str) -> list[tuple[str, str, bool | None]]:
    """(name, value, marked secret?) from `{name: value}`, `{name: {value, secret}}` or a list of
    `{name, value, secret}`; `secret` is None when not said."""
    if value is None:
        return []
    if isinstance(value, dict):
        entries = [(k, v) for k, v in value.items()]
    elif isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value):
        entries = [(i["name"], {k: v for k, v in i.items() if k != "name"}) for i in value]
    else:
        raise ConfigError(f"http endpoint '{where}' must map header names to values")
    items: list[tuple[str, str, bool | None]] = []
    for name, given in entries:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"http endpoint '{where}' must map header names to values")
        marked: bool | None = None
        if isinstance(given, dict):
            if set(given) - {"value", "secret"} or "value" not in given:
                raise ConfigError(f"http endpoint header {name!r}: use {{value: ..., secret: true|false}}")
            marked = given.get("secret")
            if marked is not None and not isinstance(marked, bool):
                raise ConfigError(f"http endpoint header {name!r}: 'secret' must be true or false")
            given = given["value"]
        if isinstance(given, dict | list) or given is None:
            raise ConfigError(f"http endpoint header {name!r} needs a value")
        items.append((name.strip(), str(given), marked))
    return items


def _split_headers(plain_given: Any, secret_given: Any) -> tuple[dict[str, str], dict[str, str]]:
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    seen: set[str] = set()
    items = _header_items(plain_given, "headers")
    items += [(name, value, True) for name, value, _ in _header_items(secret_given, "secrets.headers")]
    for name, value, marked in items:
        if name.lower() in seen:
            raise ConfigError(f"http endpoint header {name!r} is given twice")
        seen.add(name.lower())
        if marked is False and is_secret_header(name):
            raise ConfigError(
                f"http endpoint header {name!r} carries credentials by its name and is always secret"
            )
        (secret if marked or is_secret_header(name) else plain)[name] = value
    return plain, secret


def _real_url(key: str, shown: str, stored: Any) -> str:
    """The URL to use for `key`: the one given, or the stored whole URL if `shown` is its masked
    form (a stored URL keeps user:password@ only when `split_stored` could not take it out)."""
    masked = any(value == MASK for _, value in _query_parts(urlsplit(shown).query))
    if isinstance(stored, str):
        bare, userinfo = _take_userinfo(stored)
        if (masked or userinfo) and mask_url(bare) == mask_url(shown):
            return stored
    if not masked:
        return shown  # a new URL, given whole
    raise ConfigError(
        f"http endpoint '{key}' shows {MASK} for a query value but no stored value matches it: "
        "give the whole URL again"
    )


def _take_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """`url` without `user:password@`, and the (user, password) it carried, decoded."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=hostport)), (unquote(user), unquote(password))


def split_http_settings(
    config: dict[str, Any], secrets: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, secrets) with every secret-bearing setting moved into secrets (see the module doc)."""
    config = dict(config)
    secrets = copy.deepcopy(dict(secrets))
    public = _public_params(config.get("public_params"))
    if public:
        config["public_params"] = sorted(public)
    else:
        config.pop("public_params", None)

    plain, secret = _split_headers(config.pop("headers", None), secrets.pop("headers", None))
    if plain:
        config["headers"] = plain
    if secret:
        secrets["headers"] = secret

    stored = secrets.pop("urls", None)
    stored_urls: dict[str, Any] = stored if isinstance(stored, dict) else {}
    whole: dict[str, str] = {}
    userinfo: tuple[str, str] | None = None
    for key in URL_KEYS:
        value = config.get(key)
        if not isinstance(value, str) or not value:
            continue  # a missing or malformed URL is the endpoint's own check to refuse
        real, found = _take_userinfo(_real_url(key, value, stored_urls.get(key)))
        if found is not None:
            if userinfo is not None and found != userinfo:
                raise ConfigError("http endpoint URLs carry different user:password@ parts: use one")
            userinfo = found
        config[key] = mask_url(real, public)
        if config[key] != real:
            whole[key] = real
    if whole:
        secrets["urls"] = whole

    if userinfo is not None:
        authorization = any(name.lower() == "authorization" for name in {**plain, **secret})
        others = [
            flag
            for flag, given in (
                ("a bearer token (--bearer)", secrets.get("bearer")),
                ("basic auth (--basic)", secrets.get("basic_user") or secrets.get("basic_password")),
                ("an Authorization header", authorization),
            )
            if given
        ]
        if others:
            raise ConfigError(
                "http endpoint URL carries user:password@, which is basic auth, and "
                f"{' and '.join(others)} too: give one way to authenticate"
            )
        secrets["basic_user"], secrets["basic_password"] = userinfo
    return config, secrets


def split_stored(config: dict[str, Any], secrets: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`split_http_settings` for settings stored before it existed (migration 0009). Settings it
    refuses (user:password@ beside a bearer token, say) are still taken out of the config: each
    URL whole and every header into the secrets (a secret header won over a plain one of the same
    name before, and still does), so the endpoint then fails with that refusal when it is used or
    tested, instead of one credential silently winning, and nothing secret stays in plain sight."""
    try:
        return split_http_settings(config, secrets)
    except ConfigError:
        pass
    config = dict(config)
    secrets = copy.deepcopy(dict(secrets))
    stored = secrets.get("urls")
    urls: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
    for key in URL_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value:
            shown = mask_url(_take_userinfo(value)[0])
            if shown != value:
                urls[key], config[key] = value, shown
    if urls:
        secrets["urls"] = urls
    headers = config.pop("headers", None)
    if isinstance(headers, dict) and headers:
        given = secrets.get("headers")
        secrets["headers"] = {**headers, **(given if isinstance(given, dict) else {})}
    return config, secrets
