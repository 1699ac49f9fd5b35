"""What an endpoint type is configured with: one pydantic model for its settings (stored as plain
JSON, shown and audited) and one for its secrets (stored encrypted, never shown).

Each endpoint type declares the two models next to its implementation, by annotating `settings`
and `secrets` on its Endpoint class (they become `settings_model` and `secrets_model`).
Everything else derives from them:

* the endpoint's constructor: one `parse` of (config, secrets) into the two models;
* `tradelane endpoint add/set` flags (cli/endpoint_flags.py): one flag per field, `--field-name`,
  unless the field's `Flag` metadata says otherwise;
* `apply -f` YAML: an endpoint's keys are the settings' fields, `secrets:` the secrets' fields;
* `tradelane endpoint schema`: the JSON Schema a form is generated from (`json_schema`);
* `tradelane endpoint list --json`: the settings as the model dumps them, and the names of the
  secrets set;
* redaction (`secret_values` in core/endpoints/base.py): every field of the secrets model, but
  those marked `NotScrubbed`, plus the pieces `EndpointSecrets.pieces` adds.

Both models refuse unknown keys (naming them): a setting that is accepted but ignored would be a
promise nobody keeps. A blank value (None, "", [] or {}) means "not set, use the default", as it
always has for stored rows, unless a field is marked `KeepBlank`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from core.endpoints.errors import ConfigError

# --- metadata a field may carry (in its Annotated[...]) -------------------------------------------


@dataclass(frozen=True)
class Flag:
    """How a field is given on the command line, when not as `--field-name VALUE`.

    A field may carry several (`--insecure` and `--cafile` both set http's `verify`); a field with
    `Flag(None)` has no flag at all (it is set some other way). A bool field without any gets
    `--name/--no-name`; a list or dict field's flag may be repeated.
    """

    name: str | None
    help: str | None = None
    envvar: str | None = None
    # A switch: giving the flag (which then takes no value) sets the field to this.
    switch: Any = None
    is_switch: bool = False
    # Turns the string given into the field's value (for a repeated flag: into one item, or a
    # (key, value) pair of a dict field).
    parse: Callable[[str], Any] | None = None
    # Or sets several fields of the same model from one string (`--basic USER:PASSWORD`).
    spread: Callable[[str], dict[str, Any]] | None = None
    # What `endpoint add` sets when the flag is not given, from the (settings, secrets) that are
    # (None: nothing).
    cli_default: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None


def switch(name: str, value: Any, help: str | None = None) -> Flag:
    """A flag that takes no value and sets its field to `value` (`--insecure`: verify false)."""
    return Flag(name, help=help, switch=value, is_switch=True)


@dataclass(frozen=True)
class LocalPath:
    """A path on the machine tradelane runs on: the CLI and `apply` make it absolute (relative to
    where they run, `~` expanded) before it is stored, so a later process finds the same file."""


@dataclass(frozen=True)
class KeepBlank:
    """An empty value is a value of this field (not "use the default")."""


@dataclass(frozen=True)
class NotScrubbed:
    """A secrets field whose value is not searched for in text as a whole: a login name (it names
    mailboxes in URIs), or a value of which only pieces are secret (see `EndpointSecrets.pieces`)."""


# In the JSON Schema: the field's text has several lines (a form shows a text area, not one line).
MULTILINE = "x-multiline"


def multiline() -> Any:
    """Put in a field's Annotated[...]: its text has several lines (a host key list, a PEM key,
    a message body), which a one-line form input would join into one."""
    return Field(json_schema_extra={MULTILINE: True})


# For choices written in any case ("Explicit", "POST"): compared in one.
lowercase = BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value)
uppercase = BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict | tuple) and not value)


def _keeps_blank(field: FieldInfo) -> bool:
    return any(isinstance(item, KeepBlank) for item in field.metadata)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_means_default(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        by_key = {field.alias or name: field for name, field in cls.model_fields.items()}
        return {
            key: value
            for key, value in data.items()
            if not (_is_blank(value) and not (key in by_key and _keeps_blank(by_key[key])))
        }

    def stored(self) -> dict[str, Any]:
        """What is stored (and shown, for settings): the values given, as JSON, under their keys."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @classmethod
    def key_of(cls, name: str) -> str:
        """The key (in YAML, stored JSON) of a field: its alias, if it has one (`from`)."""
        return cls.model_fields[name].alias or name

    @classmethod
    def field_keys(cls) -> list[str]:
        return [cls.key_of(name) for name in cls.model_fields]

    @classmethod
    def blank_keys(cls) -> set[str]:
        """The keys whose empty value is a value, not "the default" (`KeepBlank`)."""
        return {cls.key_of(name) for name, field in cls.model_fields.items() if _keeps_blank(field)}


class EndpointSettings(_Model):
    """The settings of an endpoint type: plain values, shown by `endpoint list` and audited."""

    @classmethod
    def split_secrets(
        cls, config: dict[str, Any], secrets: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Before validation: move secret-bearing values given among the settings into the secrets
        (http's credential headers, URL query values). Idempotent. The default moves nothing."""
        return config, secrets


class EndpointSecrets(_Model):
    """The secrets of an endpoint type: encrypted at rest, never shown, scrubbed from every text."""

    model_config = ConfigDict(hide_input_in_errors=True)

    def check_with(self, settings: EndpointSettings) -> None:
        """Checks that need both models (an IMAP host needs a login); raise ValueError."""

    def pieces(self, settings: EndpointSettings) -> set[str]:
        """Parts of the secrets that can show up alone in a text (a signature inside a SAS token,
        the credentials inside an Authorization value): scrubbed as well."""
        return set()

    def __repr_args__(self) -> Any:
        # A secret must not reach a log or a traceback through a repr.
        return [(name, "***") for name in self.model_fields_set]


# --- parsing, and saying what is wrong -----------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings: where (the key's path, in the settings or the secrets),
    what kind (missing, unknown or invalid) and, for invalid values, why."""

    loc: tuple[str | int, ...]
    secret: bool
    kind: str  # "missing" | "unknown" | "invalid"
    message: str


class SettingsError(ConfigError):
    """Settings that do not fit their type's models; `problems` says each, for callers that name
    keys their own way (the CLI by flag, `apply` by YAML path). The message names keys as stored."""

    def __init__(self, scheme: str, problems: list[Problem], known: tuple[list[str], list[str]]) -> None:
        self.scheme = scheme
        self.problems = problems
        self.known = known
        super().__init__("; ".join(self.describe(p) for p in problems))

    def describe(self, problem: Problem, where: str | None = None) -> str:
        """One problem in words; `where` names the key (default: 'key' as stored)."""
        key = ".".join(str(part) for part in problem.loc)
        where = where or (repr(key) if key else "")
        kind = "secret" if problem.secret else "setting"
        if problem.kind == "unknown":
            known = ", ".join(self.known[1 if problem.secret else 0]) or "none"
            return f"{self.scheme} endpoint: unknown {kind} {where} (known: {known})"
        if problem.kind == "missing":
            return f"{self.scheme} endpoint needs {where}" + (" (a secret)" if problem.secret else "")
        if not where:
            return problem.message
        return f"{self.scheme} endpoint {where}: {problem.message}"


def _message(error: Mapping[str, Any], secret: bool) -> str:
    kind = error["type"]
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "literal_error":
        choices = str(error["ctx"]["expected"]).replace("' or '", "', '").replace("'", "")
        given = "" if secret else f", not {error['input']!r}"
        return f"must be one of {choices}{given}"
    message = str(error["msg"])
    return message[0].lower() + message[1:] if message else kind


def problems_of(exc: ValidationError, secret: bool) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        kind = {"missing": "missing", "extra_forbidden": "unknown"}.get(error["type"], "invalid")
        problems.append(Problem(tuple(error["loc"]), secret, kind, _message(error, secret)))
    return problems


S = TypeVar("S", bound="EndpointSettings")
T = TypeVar("T", bound="EndpointSecrets")


def parse(
    scheme: str,
    settings_model: type[S],
    secrets_model: type[T],
    config: Mapping[str, Any],
    secrets: Mapping[str, Any] | None,
) -> tuple[S, T]:
    """(settings, secrets) of one endpoint, checked; SettingsError naming every problem."""
    known = (settings_model.field_keys(), secrets_model.field_keys())
    try:
        raw_config, raw_secrets = settings_model.split_secrets(dict(config), dict(secrets or {}))
    except ConfigError as exc:  # e.g. a URL's user:password@ beside a bearer token
        raise SettingsError(scheme, [Problem((), False, "invalid", str(exc))], known) from None
    problems: list[Problem] = []
    settings: S | None = None
    parsed_secrets: T | None = None
    try:
        settings = settings_model.model_validate(raw_config)
    except ValidationError as exc:
        problems += problems_of(exc, secret=False)
    try:
        parsed_secrets = secrets_model.model_validate(raw_secrets)
    except ValidationError as exc:
        problems += problems_of(exc, secret=True)
    if settings is not None and parsed_secrets is not None:
        try:
            parsed_secrets.check_with(settings)
        except ValueError as exc:
            problems.append(Problem((), True, "invalid", str(exc)))
    if problems or settings is None or parsed_secrets is None:
        raise SettingsError(scheme, problems, known)
    return settings, parsed_secrets


def local_paths(model: type[_Model], values: dict[str, Any]) -> dict[str, Any]:
    """`values` with every `LocalPath` field that holds a string made absolute."""
    result = dict(values)
    for name, field in model.model_fields.items():
        key = field.alias or name
        value = result.get(key)
        if any(isinstance(item, LocalPath) for item in field.metadata) and isinstance(value, str) and value:
            result[key] = str(Path(value).expanduser().resolve())
    return result


def description(model: type[BaseModel]) -> str:
    return inspect.cleandoc(model.__doc__ or "")


def _form_order(model: type[_Model], schema: dict[str, Any]) -> dict[str, Any]:
    """Properties as a form shows them: required ones first, then the type's own fields before
    those it shares with other types (declared in a base class)."""
    properties: dict[str, Any] = schema.get("properties", {})
    required = schema.get("required", [])
    declared: list[str] = []
    for klass in model.__mro__:
        declared += [
            model.key_of(name)
            for name in vars(klass).get("__annotations__", {})
            if name in model.model_fields
        ]
    rank = {key: index for index, key in enumerate(dict.fromkeys(declared))}
    ordered = sorted(properties, key=lambda key: (key not in required, rank.get(key, len(rank))))
    return {key: properties[key] for key in ordered}


def _password_strings(schema: dict[str, Any]) -> None:
    """Mark every string a secret field holds (itself, or a map's values) `format: password`."""
    if schema.get("type") == "string" or {"type": "string"} in schema.get("anyOf", []):
        schema["format"] = "password"  # also beside anyOf: what form generators look at
    for inner in schema.get("anyOf", []):
        _password_strings(inner)
    if isinstance(schema.get("additionalProperties"), dict):
        _password_strings(schema["additionalProperties"])


def json_schema(
    scheme: str, settings_model: type[EndpointSettings], secrets_model: type[EndpointSecrets]
) -> dict[str, Any]:
    """The JSON Schema of one endpoint as `apply` takes it: name, type, the settings, and the
    secrets under `secrets` (each `writeOnly`, strings with `format: password`)."""
    settings = settings_model.model_json_schema(by_alias=True)
    secrets = secrets_model.model_json_schema(by_alias=True)
    defs = {**settings.pop("$defs", {}), **secrets.pop("$defs", {})}
    for prop in secrets.get("properties", {}).values():
        prop["writeOnly"] = True
        _password_strings(prop)
    properties: dict[str, Any] = {
        "name": {"type": "string", "title": "Name", "description": "The endpoint's name."},
        "type": {"const": scheme, "title": "Type"},
        **_form_order(settings_model, settings),
    }
    if secrets.get("properties"):
        properties["secrets"] = {
            "type": "object",
            "title": "Secrets",
            "description": description(secrets_model) or "Stored encrypted, never shown.",
            "properties": _form_order(secrets_model, secrets),
            "required": secrets.get("required", []),
            "additionalProperties": False,
            "writeOnly": True,
        }
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{scheme} endpoint",
        "description": description(settings_model),
        "type": "object",
        "properties": properties,
        "required": ["name", "type", *settings.get("required", [])],
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs
    return schema
