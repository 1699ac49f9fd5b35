"""The endpoint form: an HTML form generated from an endpoint type's JSON Schema, and read back.

The schema is `core.endpoints.settings.json_schema(...)`, the document `tradelane endpoint schema`
prints, so the form has the same fields, words and order as the CLI's flags and `apply`'s YAML
keys, for every registered type (a new type gets its form without a line here). Each property's
shape picks a control and how its text is read back:

| shape | control | read back as |
| --- | --- | --- |
| string | text input, or a text area when the field is `x-multiline` | the text; blank = unset |
| number, integer | number input (min/max from the schema) | the text (the model converts it) |
| enum | select, "(default: X)" first | the choice |
| boolean | select: default / yes / no (a checkbox cannot say "default") | true, false, unset |
| boolean or string (http verify) | select yes / no / "this file:" + a text input | true, false, the text |
| array, array or string | text area, one item per line | the non-blank lines |
| object of strings | text area, one `Name: value` per line | a dict |
| anything else | text area holding JSON, labelled so | `json.loads` |

A text whose empty value is a value of its own (`KeepBlank`: http's `list_prefix_param` "" is
"none", not the default) gets an "empty" box: blank text alone means the default, as everywhere.

Secrets (`writeOnly`) are never rendered back: a password input (a text area for several lines,
also left empty), "set — leave blank to keep" when the endpoint has it, and, when editing, a "clear"
box that unsets it. Field names keep the two models apart (azure and http have keys in both):
`setting.KEY`, `secret.KEY`, `clear.KEY` (and `setting.KEY.file`, `setting.KEY.empty`), plus `name`.

`parse_form` turns the posted fields into the (settings, secrets) dicts `endpoint_rows.add` takes;
`edit_changes` turns them, for a stored endpoint, into `set_settings`' (changes, secret changes,
unset). Both raise the models' own `SettingsError`, whose problems `build` shows next to their
fields, so the console and the CLI refuse the same values with the same words.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from api.web.templates import environment
from core.crypto import decrypt_json
from core.endpoints.base import ConfigError
from core.endpoints.registry import endpoint_class
from core.endpoints.rows import known_only
from core.endpoints.settings import MULTILINE, Problem, SettingsError, json_schema
from core.errors import said
from core.models import Endpoint as EndpointRow

SETTING = "setting."
SECRET = "secret."
CLEAR = "clear."
FILE_CHOICE = "file"  # the "this file:" choice of a boolean-or-path select
FILE_SUFFIX = ".file"  # its text input: `setting.verify.file`
EMPTY_SUFFIX = ".empty"  # the "empty" box of a text whose empty value is a value (KeepBlank)
NAME = "name"
# An endpoint form is read with larger bounds than the accept page's (security.read_form's
# defaults): http has ~30 fields, and a private key or certificate is kilobytes of text.
FORM_BYTES = 64 * 1024
FORM_FIELDS = 200

_templates = environment  # the web's one Jinja2 environment (api/web/templates.py)


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass
class Control:
    """One form field: what the template draws, and how its text is read back."""

    key: str  # the settings or secrets key
    secret: bool
    shape: str  # string | text | number | enum | boolean | file_or_bool | lines | pairs | json
    label: str
    help: str
    required: bool = False
    placeholder: str = ""
    options: list[Option] = field(default_factory=list)
    minimum: str | None = None
    maximum: str | None = None
    step: str | None = None
    value: str = ""  # never set for a secret
    file_value: str = ""  # the text of a file_or_bool control
    empty_allowed: bool = False  # "" is a value of this text, not its default: an "empty" box says it
    empty: bool = False  # that box, ticked
    is_set: bool = False  # a secret the stored endpoint has
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return (SECRET if self.secret else SETTING) + self.key

    @property
    def empty_name(self) -> str:
        return self.name + EMPTY_SUFFIX

    @property
    def clear_name(self) -> str:
        return CLEAR + self.key

    @property
    def id(self) -> str:
        return "f-" + "".join(c if c.isalnum() else "-" for c in self.name)


@dataclass
class EndpointForm:
    """An endpoint type's form: the values to show, and what was wrong with the last submission."""

    type: str
    title: str
    description: str
    secrets_description: str
    editing: bool
    name: str
    controls: list[Control]
    errors: list[str] = field(default_factory=list)  # problems no single field owns
    name_errors: list[str] = field(default_factory=list)

    @property
    def settings(self) -> list[Control]:
        return [c for c in self.controls if not c.secret]

    @property
    def secrets(self) -> list[Control]:
        return [c for c in self.controls if c.secret]


@dataclass(frozen=True)
class Submitted:
    """A posted endpoint form: its name, the settings and secrets given (blank ones left out), and
    the secrets whose "clear" box was ticked."""

    name: str
    settings: dict[str, Any]
    secrets: dict[str, Any]
    clear: list[str]


# --- the controls, from the schema ----------------------------------------------------------------


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {}), **prop}
    return prop


def _variants(schema: dict[str, Any], prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The property's types but null (null is "blank", which every control can say)."""
    if "anyOf" in prop:
        return [_resolve(schema, v) for v in prop["anyOf"] if v.get("type") != "null"]
    return [prop]


def _shape(schema: dict[str, Any], prop: dict[str, Any]) -> str:
    variants = _variants(schema, prop)
    types = [v.get("type") for v in variants]
    if len(variants) == 1:
        one = variants[0]
        if "enum" in one:
            return "enum"
        if one.get("type") == "string":
            return "text" if prop.get(MULTILINE) else "string"
        if one.get("type") in ("integer", "number"):
            return "number"
        if one.get("type") == "boolean":
            return "boolean"
        if one.get("type") == "array" and _scalar_items(one):
            return "lines"
        if one.get("type") == "object" and one.get("additionalProperties", {}).get("type") == "string":
            return "pairs"
    if sorted(map(str, types)) == ["boolean", "string"]:
        return "file_or_bool"
    if sorted(map(str, types)) == ["array", "string"] and all(
        _scalar_items(v) for v in variants if v.get("type") == "array"
    ):
        return "lines"
    return "json"


def _scalar_items(prop: dict[str, Any]) -> bool:
    return prop.get("items", {}).get("type") in ("string", "integer", "number")


def _number_bounds(prop: dict[str, Any]) -> tuple[str | None, str | None, str]:
    (one,) = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
    low = one.get("minimum", one.get("exclusiveMinimum"))
    high = one.get("maximum", one.get("exclusiveMaximum"))
    step = "1" if one.get("type") == "integer" else "any"
    return (None if low is None else str(low)), (None if high is None else str(high)), step


def _default_text(shape: str, default: Any) -> str:
    if default is None:
        return ""
    if shape == "boolean" or shape == "file_or_bool":
        return "yes" if default is True else "no" if default is False else str(default)
    return _text_of(shape, default) if shape != "json" else json.dumps(default)


def _control(schema: dict[str, Any], key: str, prop: dict[str, Any], secret: bool, required: bool) -> Control:
    prop = _resolve(schema, prop)
    shape = _shape(schema, prop)
    default = prop.get("default")
    control = Control(
        key=key,
        secret=secret,
        shape=shape,
        label=str(prop.get("title") or key),
        help=" ".join(str(prop.get("description", "")).split()),
        required=required,
    )
    if shape in ("string", "number", "lines", "text") and not secret:
        control.placeholder = _default_text(shape, default).replace("\n", ", ")
    if shape == "number":
        control.minimum, control.maximum, control.step = _number_bounds(prop)
    if shape == "enum":
        (one,) = _variants(schema, prop)
        first = f"(default: {default})" if default is not None else "(not set)"
        control.options = [Option("", first), *(Option(str(v), str(v)) for v in one["enum"])]
    if shape == "boolean":
        first = f"(default: {_default_text(shape, default)})" if default is not None else "(not set)"
        control.options = [Option("", first), Option("true", "yes"), Option("false", "no")]
    if shape == "file_or_bool":
        first = f"(default: {_default_text(shape, default)})" if default is not None else "(not set)"
        control.options = [
            Option("", first),
            Option("true", "yes"),
            Option("false", "no"),
            Option(FILE_CHOICE, "this file:"),
        ]
    if shape == "json":
        control.label += " (JSON)"
    return control


def controls_of(type_: str) -> tuple[dict[str, Any], list[Control]]:
    """The type's schema and its form's controls, settings first, in the schema's (form) order."""
    cls = endpoint_class(type_)
    schema = json_schema(type_, cls.settings_model, cls.secrets_model)
    properties: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", []))
    controls = [
        _control(schema, key, prop, False, key in required)
        for key, prop in properties.items()
        if key not in (NAME, "type", "secrets")
    ]
    blank = cls.settings_model.blank_keys()
    for control in controls:
        control.empty_allowed = control.key in blank and control.shape in ("string", "text")
    secrets = properties.get("secrets", {})
    secret_required = set(secrets.get("required", []))
    controls += [
        _control(schema, key, prop, True, key in secret_required)
        for key, prop in secrets.get("properties", {}).items()
    ]
    return schema, controls


# --- values: stored settings to form text, form text to settings -----------------------------------


def _text_of(shape: str, value: Any) -> str:
    """A stored setting as its control shows it."""
    if value is None:
        return ""
    if shape in ("boolean", "file_or_bool") and isinstance(value, bool):
        return "true" if value else "false"
    if shape == "lines":
        items = value if isinstance(value, list) else [value]
        return "\n".join(str(item) for item in items)
    if shape == "pairs" and isinstance(value, dict):
        return "\n".join(f"{name}: {text}" for name, text in value.items())
    if shape == "json":
        return json.dumps(value)
    return str(value)


def fields_of(type_: str, settings: Mapping[str, Any]) -> dict[str, str]:
    """A stored endpoint's settings as the posted fields of its edit form (no secret, ever)."""
    _, controls = controls_of(type_)
    fields: dict[str, str] = {}
    for control in controls:
        if control.secret or control.key not in settings:
            continue
        value = settings[control.key]
        if control.empty_allowed and value == "":
            fields[control.empty_name] = "1"
        elif control.shape == "file_or_bool" and isinstance(value, str):
            fields[control.name], fields[control.name + FILE_SUFFIX] = FILE_CHOICE, value
        else:
            fields[control.name] = _text_of(control.shape, value)
    return fields


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _posted(control: Control, fields: Mapping[str, str]) -> Any:
    """The control's posted value as the model takes it; None for blank. ValueError if unreadable."""
    value = _value(control, fields.get(control.name, ""), fields.get(control.name + FILE_SUFFIX, ""))
    if value is None and control.empty_allowed and fields.get(control.empty_name):
        return ""  # text typed wins over the box (which a stored empty value leaves ticked)
    return value


def _value(control: Control, text: str, file_text: str) -> Any:
    text = text.replace("\r\n", "\n")  # browsers send a text area's lines with CRLF
    if control.shape in ("string", "text", "number", "enum"):
        blank = not text.strip()
        if blank:
            return None
        return text.strip() if control.shape in ("number", "enum") else text
    if control.shape == "boolean":
        return {"": None, "true": True, "false": False}.get(text.strip(), text)
    if control.shape == "file_or_bool":
        choice = text.strip()
        if choice == FILE_CHOICE:
            if not file_text.strip():
                raise ValueError("give the file's path, or choose yes or no")
            return file_text.strip()
        return {"": None, "true": True, "false": False}.get(choice, choice)
    if control.shape == "lines":
        return _lines(text) or None
    if control.shape == "pairs":
        pairs: dict[str, str] = {}
        for line in _lines(text):
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise ValueError("write one 'Name: value' per line")
            pairs[name.strip()] = value.strip()
        return pairs or None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError("is not valid JSON") from None


def parse_form(type_: str, fields: Mapping[str, str]) -> Submitted:
    """The posted form as (name, settings, secrets, cleared secrets); SettingsError naming each
    control whose text cannot be read (the models check the values themselves)."""
    _, controls = controls_of(type_)
    settings: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    problems: list[Problem] = []
    # A field this form does not have is refused, as the models refuse a key they do not know.
    names = {c.name for c in controls} | {c.clear_name for c in controls if c.secret}
    names |= {c.name + FILE_SUFFIX for c in controls if c.shape == "file_or_bool"}
    names |= {c.empty_name for c in controls if c.empty_allowed}
    for name in fields:
        if name.startswith((SETTING, SECRET, CLEAR)) and name not in names:
            secret = not name.startswith(SETTING)
            problems.append(Problem((name.split(".", 1)[1],), secret, "unknown", ""))
    for control in controls:
        try:
            value = _posted(control, fields)
        except ValueError as exc:
            problems.append(Problem((control.key,), control.secret, "invalid", str(exc)))
            continue
        if value is not None:
            (secrets if control.secret else settings)[control.key] = value
    clear = [c.key for c in controls if c.secret and fields.get(c.clear_name) and c.key not in secrets]
    if problems:
        cls = endpoint_class(type_)
        raise SettingsError(
            type_, problems, (cls.settings_model.field_keys(), cls.secrets_model.field_keys())
        )
    return Submitted(fields.get(NAME, "").strip(), settings, secrets, clear)


def stored_models(row: EndpointRow) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored endpoint's settings and secrets (decrypted, in memory only), its type's keys only."""
    cls = endpoint_class(row.type)
    config, secrets, _ = known_only(cls, dict(row.config), decrypt_json(row.secrets))
    return config, secrets


def edit_changes(row: EndpointRow, submitted: Submitted) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """What `set_settings` takes to make a stored endpoint what its edit form says: the form holds
    every setting (blank ones go back to their defaults) and the secrets to replace (blank ones
    stay, cleared ones go). Checked by the type's models first (SettingsError)."""
    cls = endpoint_class(row.type)
    config, secrets = stored_models(row)
    wanted_secrets = {k: v for k, v in secrets.items() if k not in submitted.clear}
    wanted_secrets.update(submitted.secrets)
    settings_model, secrets_model = cls.parse(submitted.settings, wanted_secrets)
    want_config, want_secrets = settings_model.stored(), secrets_model.stored()
    changes = {k: v for k, v in want_config.items() if config.get(k) != v}
    secret_changes = {k: v for k, v in want_secrets.items() if secrets.get(k) != v}
    unset = sorted(
        {k for k in config if k not in want_config} | {k for k in secrets if k not in want_secrets}
    )
    # set_settings replaces a key given (or unset) in both models at once (http's headers live in
    # the two): a key touched on one side takes the other side's wanted value along.
    for key in {*changes, *secret_changes, *unset}:
        if key in want_config:
            changes[key] = want_config[key]
        if key in want_secrets:
            secret_changes[key] = want_secrets[key]
    unset = [key for key in unset if key not in changes and key not in secret_changes]
    return changes, secret_changes, unset


# --- the form, with values and problems -----------------------------------------------------------


def _shown_settings(
    type_: str, controls: list[Control], fields: Mapping[str, str], stored_secrets: Mapping[str, Any]
) -> dict[str, str]:
    """The posted settings' fields as they may be shown again: what the type keeps secret among
    them (a credential header, a URL's query values or user:password@) taken out first, as the
    store would; a field that cannot be split alone is left blank."""
    cls = endpoint_class(type_)
    given: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    for control in controls:
        if control.secret:
            continue
        try:
            value = _posted(control, fields)
        except ValueError:
            # Shown as typed, but a text of name/value lines, which can hold a credential header.
            if control.shape != "pairs":
                unreadable[control.name] = fields.get(control.name, "")
            continue
        if value is not None:
            given[control.key] = value
    split = cls.settings_model.split_secrets
    try:
        shown, _ = split(dict(given), dict(stored_secrets))
    except ConfigError:
        shown = {}
        for key, value in given.items():
            try:
                shown.update(split({key: value}, dict(stored_secrets))[0])
            except ConfigError:
                continue
    return {**fields_of(type_, {k: v for k, v in shown.items() if k in given}), **unreadable}


def build(
    type_: str,
    fields: Mapping[str, str] | None = None,
    *,
    editing: bool = False,
    secret_names: Iterable[str] = (),
    stored_secrets: Mapping[str, Any] | None = None,
    error: ConfigError | None = None,
    posted: bool | None = None,
) -> EndpointForm:
    """The form of `type_` showing `fields` (posted, or `fields_of` a stored endpoint's settings),
    which secrets the endpoint has (`secret_names`, never values), and `error`'s problems next to
    their fields. `fields` that were posted (`posted`, by default when there is an `error`) are
    shown as they would be stored: no secret typed into a plain field comes back in the page;
    when editing, pass the stored secrets (a URL shown with *** is matched to its whole form
    there)."""
    fields = fields or {}
    schema, controls = controls_of(type_)
    cls = endpoint_class(type_)
    if posted if posted is not None else error is not None:
        shown = _shown_settings(type_, controls, fields, stored_secrets or {})
    else:
        shown = dict(fields)
    has = {name.split(".", 1)[0] for name in secret_names}
    for control in controls:
        if control.secret:
            control.is_set = control.key in has
            continue
        control.value = shown.get(control.name, "")
        control.file_value = shown.get(control.name + FILE_SUFFIX, "")
        control.empty = bool(shown.get(control.empty_name))
    form = EndpointForm(
        type=type_,
        title=str(schema.get("title", type_)),
        description=" ".join(str(schema.get("description", "")).split()),
        secrets_description=" ".join(
            str(schema["properties"].get("secrets", {}).get("description", "")).split()
        ),
        editing=editing,
        name=fields.get(NAME, "").strip(),
        controls=controls,
    )
    if error is not None:
        _place(form, error, cls.secrets_model.field_keys())
    return form


def _place(form: EndpointForm, error: ConfigError, secret_keys: list[str]) -> None:
    """Each problem next to its field (by key and model), the rest at the form's top."""
    if not isinstance(error, SettingsError):
        form.errors.append(said(error))
        return
    by_name = {(c.key, c.secret): c for c in form.controls}
    for problem in error.problems:
        key = str(problem.loc[0]) if problem.loc else None
        control = by_name.get((key, problem.secret)) if key is not None else None
        if control is None and key is not None and not problem.secret:
            control = by_name.get((key, True)) if key in secret_keys else None
        message = error.describe(problem)
        if control is not None:
            control.errors.append(message)
        else:
            form.errors.append(message)


def render(form: EndpointForm, csrf: str = "", action: str = "", try_action: str = "") -> Markup:
    """The form's HTML (`templates/endpoint_form.html`): every control labelled, its help and
    errors tied to it by aria-describedby, secrets in empty inputs; with `try_action`, a second
    button posting the same fields there ("Test these settings")."""
    html = _templates.get_template("endpoint_form.html").render(
        form=form, csrf=csrf, action=action, try_action=try_action
    )
    return Markup(html)  # rendered by an autoescaping environment
