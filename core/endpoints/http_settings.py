"""An HTTP endpoint's settings and secrets: which settings are secret, moving them out of its
plain config, and the two models.

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

import base64
import copy
import posixpath
from typing import Annotated, Any, Literal, Self
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from core.endpoints.base import ConfigError, InvalidPath, clean_path
from core.endpoints.settings import (
    EndpointSecrets,
    EndpointSettings,
    Flag,
    KeepBlank,
    LocalPath,
    NotScrubbed,
    switch,
    uppercase,
)
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


# --- the models -----------------------------------------------------------------------------------

DEFAULT_SUCCESS_CODES = (200, 201, 202, 204)
FOLLOW_REDIRECTS = ("none", "same-host", "any")


def check_url(value: str, key: str, *, template: bool = False) -> str:
    """`value` if it is an http(s) URL with a host (and `{path}` in a template); ValueError."""
    if urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(f"http endpoint '{key}' must be an http:// or https:// URL")
    if not urlsplit(value).hostname:
        raise ValueError(f"http endpoint '{key}' has no host")
    if template and PATH_PLACEHOLDER not in value:
        raise ValueError(f"http endpoint '{key}' must contain {{path}}")
    return value


def _url(key: str, *, template: bool = False) -> AfterValidator:
    return AfterValidator(lambda value: check_url(value, key, template=template))


def _headers(value: dict[str, str]) -> dict[str, str]:
    headers = {name.strip(): str(text) for name, text in value.items()}
    if not all(headers):
        raise ValueError("must map header names to values")
    if any("\n" in k or "\r" in k or "\n" in v or "\r" in v for k, v in headers.items()):
        raise ValueError("contains a line break")
    return headers


def header_option(given: str) -> tuple[str, str]:
    """`--header 'Name: value'` as (name, value); never echoes the value (it may be a credential)."""
    name, sep, value = given.partition(":")
    if not sep or not name.strip():
        raise ValueError("needs 'Name: value' (a name, a colon, the value)")
    return name.strip(), value.strip()


def basic_option(given: str) -> dict[str, str]:
    """`--basic USER:PASSWORD` as the two secrets."""
    user, sep, password = given.partition(":")
    if not sep:
        raise ValueError("needs USER:PASSWORD")
    return {"basic_user": user, "basic_password": password}


Headers = Annotated[dict[str, str], AfterValidator(_headers)]


class HttpSettings(EndpointSettings):
    """A partner's HTTP API: files are POSTed or PUT to a URL (raw or as a multipart field), and
    pulled from a JSON listing (`list_url`) or one URL (`pull_url`). Credential headers, URL query
    values and user:password@ are moved into the secrets (core/endpoints/http_settings.py)."""

    url: Annotated[str, _url("url")]
    """Base URL; pushes go here (or to url/<path> with path_in_url)."""
    method: Annotated[Literal["POST", "PUT"], uppercase] = "POST"
    """POST or PUT."""
    headers: Annotated[
        Headers,
        Flag(
            "--header",
            parse=header_option,
            help="'Name: value' (repeatable); credential headers (Authorization, X-Api-Key, Cookie, "
            "*token*, *key*, *secret*…) are kept secret.",
        ),
    ] = Field(default_factory=dict)
    """Headers sent with every request (those that carry credentials go to the secrets)."""
    success_codes: Annotated[
        tuple[Annotated[int, Field(ge=100, le=599)], ...],
        Flag("--success-code", help="An answer that counts as delivered (repeatable; 200 201 202 204)."),
    ] = DEFAULT_SUCCESS_CODES
    """Push answers that count as delivered."""
    upload_mode: Literal["raw", "multipart"] = "raw"
    """raw (the body is the file; Content-Disposition names it) or multipart (a form field)."""
    file_field: str = "file"
    """The multipart field name."""
    path_in_url: bool = False
    """Push to url/<path> instead of url."""
    list_url: Annotated[str | None, _url("list_url")] = None
    """GET: a JSON list of {name, size, modified?, etag?, url?} (or {files: [...]}), to pull a folder."""
    pull_url: Annotated[str | None, _url("pull_url")] = None
    """Or: the URL of one file to pull with GET (an export, a report)."""
    pull_name: str | None = None
    """The name pull_url's file is offered under (default: the URL's last path segment)."""
    list_prefix_param: Annotated[str | None, KeepBlank()] = "prefix"
    """Query parameter carrying "<folder>/" when listing ("" or null: none)."""
    download_url: Annotated[str | None, _url("download_url", template=True)] = None
    """GET/HEAD template with {path} (default url/<path>; a listed "url" wins)."""
    delete_url: Annotated[str | None, _url("delete_url", template=True)] = None
    """Template with {path} (default url/<path>)."""
    delete_method: Annotated[str, uppercase] = "DELETE"
    """The method that removes a pulled file."""
    verify: Annotated[
        bool | str,
        KeepBlank(),
        LocalPath(),
        switch("--insecure", False, "Do not verify the server's TLS certificate."),
        Flag("--cafile", help="A CA bundle or the server's own certificate (PEM) to trust."),
    ] = True
    """true, false, or a CA bundle file to trust."""
    timeout: Annotated[float, Field(gt=0)] = 60
    """Seconds per network operation."""
    spool_dir: Annotated[str | None, LocalPath()] = None
    """Where a file is spooled before it is sent (default: the system's temp folder)."""
    follow_redirects: Literal["none", "same-host", "any"] = "none"
    """none (a redirect is an error naming its Location), same-host, or any; never into a
    loopback/private range the endpoint's own URL is not in."""
    public_params: Annotated[tuple[str, ...], Flag("--public-param")] = ()
    """Query parameters of the URLs whose values are not secret (the others are shown as ***)."""

    @classmethod
    def split_secrets(
        cls, config: dict[str, Any], secrets: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return split_http_settings(config, secrets)

    @field_validator("success_codes")
    @classmethod
    def _codes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @field_validator("delete_method")
    @classmethod
    def _method(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError("must be an HTTP method such as DELETE")
        return value

    @field_validator("verify")
    @classmethod
    def _verify(cls, value: bool | str) -> bool | str:
        if value == "":
            raise ValueError("must be true, false or the path of a CA file")
        return value

    @model_validator(mode="after")
    def _one_pull(self) -> Self:
        if self.pull_url and self.list_url:
            raise ValueError("http endpoint takes 'list_url' (a folder) or 'pull_url' (one file), not both")
        if self.pull_name and not self.pull_url:
            raise ValueError("http endpoint 'pull_name' names the file of 'pull_url', which is not set")
        if self.pull_url:
            pull_name_of(self.pull_url, self.pull_name)
        return self


def pull_name_of(pull_url: str, given: str | None) -> str:
    """The name pull_url's file is offered under; ValueError unless it is one file name."""
    name = given or posixpath.basename(urlsplit(pull_url).path.rstrip("/"))
    try:
        clean = clean_path(name)
    except InvalidPath:
        clean = ""
    if not clean or "/" in clean:
        raise ValueError("http endpoint 'pull_name' must be one file name (the pull_url names none)")
    return clean


class HttpSecrets(EndpointSecrets):
    """A bearer token or basic auth, secret headers (alone or with either), and the whole URLs
    whose query values the settings show as ***."""

    bearer: str | None = None
    """A bearer token (Authorization: Bearer ...)."""
    basic_user: Annotated[
        str | None, Flag("--basic", help="USER:PASSWORD.", spread=basic_option), NotScrubbed()
    ] = None
    """Basic auth's user (an API key as the user, with an empty password, is kept secret too)."""
    basic_password: Annotated[str | None, Flag(None), KeepBlank()] = None
    """Basic auth's password (may be empty)."""
    headers: Annotated[
        Headers, Flag("--secret-header", parse=header_option, help="'Name: value' kept secret (repeatable).")
    ] = Field(default_factory=dict)
    """Secret headers (X-Api-Key, ...), sent only to the endpoint's own origins."""
    urls: Annotated[dict[str, str], Flag(None), NotScrubbed()] = Field(default_factory=dict)
    """The whole URL of each URL setting whose query values are secret."""

    @field_validator("urls")
    @classmethod
    def _url_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key, url in value.items():
            if key not in URL_KEYS:
                raise ValueError(f"unknown URL setting {key!r} (known: {', '.join(URL_KEYS)})")
            check_url(url, key, template=key in ("download_url", "delete_url"))
        return value

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        self.request_headers()
        return self

    def request_headers(self) -> dict[str, str]:
        """The secret headers each request to the endpoint's own origins carries: `headers` and an
        Authorization header made from the bearer token or basic auth. ValueError when two ways
        to authenticate are given."""
        headers = dict(self.headers)
        bearer, user, password = self.bearer, self.basic_user, self.basic_password
        if bearer and (user or password):
            raise ValueError("http endpoint takes a bearer token or basic auth, not both")
        # An empty password is fine (an API key as the user name: `https://KEY@host/`), a missing one is not.
        if (user and password is None) or (password and not user):
            raise ValueError("http basic auth needs both basic_user and basic_password")
        if (bearer or user) and any(k.lower() == "authorization" for k in headers):
            raise ValueError("http endpoint takes an Authorization header or bearer/basic auth, not both")
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        elif user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        return headers

    def pieces(self, settings: EndpointSettings) -> set[str]:
        """The credentials inside Authorization values, the basic user when it is a key with no
        password, and the query values of the URLs but those named public."""
        assert isinstance(settings, HttpSettings)
        values = set(self.request_headers().values())
        values |= {v.split(" ", 1)[1] for v in values if v.startswith(("Bearer ", "Basic "))}
        if self.basic_user and not self.basic_password:
            values.add(self.basic_user)
        public = frozenset(settings.public_params)
        for url in self.urls.values():
            values.update(query_secrets(url, public))
        return values
