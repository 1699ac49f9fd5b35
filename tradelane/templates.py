"""Flow templates: a Prefect flow registered under a name, with a params model, a description and its tasks.

A data flow runs one template (`DataFlow.template`, default `transfer`) with its params
(`DataFlow.params`, checked against the template's model when the flow is added). Everything that
used to know the `transfer` flow by name (the runner's deployments, the dispatcher's run parameters,
the fork server's preload list, `flow add`, `apply`, `template list/show`) asks this registry.

Writing one (the whole public API an author needs)::

    from prefect import flow
    from pydantic import BaseModel
    from tradelane.templates import template

    class Params(BaseModel):
        suffix: str = ".done"
        "Added to every delivered file's name."

    @template("stamp", params=Params, tasks=[start, push], description="Deliver with a suffix.")
    @flow(name="stamp")
    async def stamp(data_flow_id: int, transfer_ids: list[int], params: Params) -> ...: ...

The flow is called with `data_flow_id` and `transfer_ids` (the batch of pending transfers) and, if
its signature has one, `params` (the data flow's params as a dict, which Prefect turns into the
model). `template(...)` returns the flow unchanged and registers it in this process.

Where templates come from (like fsspec's and pytest's plugins):
- built-ins: one line in `BUILT_IN` (name → "module:attr"), imported when first asked for;
- installed packages: an entry point in the group `tradelane.templates`, named after the template,
  pointing at the decorated flow (`stamp = "stamp_template.flow:stamp"`);
- `register(...)`: this process only (tests, embedding).

A package that fails to import (or names no template) does not stop the others: it is reported by
`broken()` with the package's name, shown by `tradelane template list` and logged by `up`.

This module imports neither Prefect nor any template at import time: the CLI reads it on every
`flow add`. Loading a template imports its module (and Prefect), only when that template is asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

ENTRY_POINT_GROUP = "tradelane.templates"
DEFAULT = "transfer"

# Built-in templates: name → "module:attr" of the decorated flow. One line per built-in.
BUILT_IN: dict[str, str] = {
    "transfer": "flows.transfer:transfer",
    "pgp-encrypt": "flows.pgp_encrypt:pgp_encrypt",
    "pgp-decrypt": "flows.pgp_decrypt:pgp_decrypt",
    "compress": "flows.compress:compress_flow",
    "decompress": "flows.decompress:decompress_flow",
    "edi-route": "flows.edi_route:edi_route",
}

log = logging.getLogger("tradelane.templates")

F = TypeVar("F")


class TemplateError(ValueError):
    """A template cannot be found or loaded, or params do not fit its model."""


class NoParams(BaseModel):
    """The params model of a template that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Param:
    """One param of a template, as `template show` describes it."""

    name: str
    type: str
    required: bool
    default: Any
    description: str


@dataclass(frozen=True)
class Template:
    """A registered template: its flow, params model, description and the names of the tasks it uses."""

    name: str
    flow: Any  # a prefect.Flow; typed loosely so this module does not import Prefect
    params: type[BaseModel] = NoParams
    description: str = ""
    tasks: tuple[str, ...] = ()
    source: str = "built-in"  # or the distribution (package) that installed it

    @property
    def flow_name(self) -> str:
        """The Prefect flow's name: the first half of its deployments' names (`flow/deployment`)."""
        return str(self.flow.name)

    @property
    def module(self) -> str:
        """The module that defines the flow: what the fork server preloads."""
        return str(self.flow.fn.__module__)

    @property
    def takes_params(self) -> bool:
        return "params" in inspect.signature(self.flow.fn).parameters

    def check(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Params as given (`--param`, YAML) → the JSON stored on the data flow; TemplateError naming
        the bad key. Values left out take the model's defaults when the flow runs."""
        return check_params(self, raw)

    def run_parameters(
        self, data_flow_id: int, transfer_ids: list[int], params: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The parameters of one run of this template for a batch of a data flow's transfers."""
        parameters: dict[str, Any] = {"data_flow_id": data_flow_id, "transfer_ids": transfer_ids}
        if self.takes_params:
            parameters["params"] = dict(params or {})
        return parameters

    def describe(self) -> dict[str, Any]:
        """What `template show --json` prints."""
        return {
            "name": self.name,
            "description": self.description,
            "flow": self.flow_name,
            "module": self.module,
            "source": self.source,
            "params": [p.__dict__ for p in params_of(self.params)],
            "tasks": list(self.tasks),
        }


@dataclass(frozen=True)
class Broken:
    """An installed template that could not be loaded: which package, and why."""

    name: str
    package: str
    error: str

    def describe(self) -> str:
        return f"template {self.name!r} from package {self.package!r} failed to load: {self.error}"


_registered: dict[str, Template] = {}
_loaded: dict[str, Template] = {}
_broken: dict[str, Broken] = {}


def template(
    name: str,
    *,
    params: type[BaseModel] = NoParams,
    description: str | None = None,
    tasks: Iterable[Any] = (),
) -> Callable[[F], F]:
    """Register a Prefect flow as the template `name`; returns the flow unchanged.

    `params` is the pydantic model of its params, `description` defaults to the flow's docstring,
    `tasks` are the Prefect tasks it uses (shown by `template show`)."""
    check_name(name)

    def register_flow(flow: F) -> F:
        fn = getattr(flow, "fn", flow)
        _resolve_annotations(fn)
        text = description or inspect.getdoc(fn) or ""
        tmpl = Template(
            name=name,
            flow=flow,
            params=params,
            description=text.strip(),
            tasks=tuple(getattr(t, "name", str(t)) for t in tasks),
        )
        flow.__tradelane_template__ = tmpl  # type: ignore[attr-defined]
        _registered[name] = tmpl
        return flow

    return register_flow


def _resolve_annotations(fn: Any) -> None:
    """Turn the flow function's postponed annotations (`from __future__ import annotations`) into the
    objects they name. The runner hands a flow to its run process by value (cloudpickle), which
    carries only the globals the function's code uses: a params model named only in an annotation
    would be missing there, and Prefect could not build the run's parameters."""
    try:
        fn.__annotations__ = typing.get_type_hints(fn)
    except Exception:  # a name that cannot be resolved yet: Prefect reports it when the flow runs
        log.debug("could not resolve the annotations of %r", fn, exc_info=True)


def register(tmpl: Template, *, replace: bool = False) -> None:
    """Make a template known to this process (tests, embedding); refused for a taken name unless `replace`."""
    check_name(tmpl.name)
    if not replace and tmpl.name in names() and get(tmpl.name) is not tmpl:
        raise TemplateError(f"template {tmpl.name!r} is already registered")
    _registered[tmpl.name] = tmpl
    _loaded.pop(tmpl.name, None)


def unregister(name: str) -> None:
    """Forget a template `register()` (or a test's import) added; built-in and installed ones stay."""
    _registered.pop(name, None)
    _loaded.pop(name, None)


def refresh() -> None:
    """Read the installed templates (entry points) again, e.g. after a package was installed."""
    _installed.cache_clear()
    _loaded.clear()
    _broken.clear()
    importlib.invalidate_caches()


@cache
def _installed() -> dict[str, EntryPoint]:
    """Templates other packages declare (entry points), read once per process."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def names() -> list[str]:
    """Every known template's name (loaded or not, broken ones included)."""
    return sorted({*BUILT_IN, *_installed(), *_registered})


def get(name: str) -> Template:
    """The template `name`, loaded; TemplateError if unknown or broken (saying which package and why)."""
    if name in _loaded:
        return _loaded[name]
    if name in _broken:
        raise TemplateError(_broken[name].describe())
    if name in BUILT_IN:
        tmpl = _load_target(name, BUILT_IN[name], "tradelane")
    elif name in _installed():
        ep = _installed()[name]
        package = ep.dist.name if ep.dist is not None else ep.value.partition(":")[0]
        try:
            tmpl = _load_target(name, ep, package)
        except Exception as exc:  # any error of a third-party import: report it, keep the others
            broken = Broken(name, package, _one_line(exc))
            _broken[name] = broken
            raise TemplateError(broken.describe()) from exc
    elif name in _registered:
        tmpl = _registered[name]
    elif _newly_installed(name):
        return get(name)
    else:
        raise TemplateError(f"unknown template {name!r}; known: {', '.join(names())}")
    _loaded[name] = tmpl
    return tmpl


def _newly_installed(name: str) -> bool:
    """Whether a package installed since the entry points were read declares `name`."""
    _installed.cache_clear()
    importlib.invalidate_caches()
    return name in _installed()


def load_all() -> tuple[list[Template], list[Broken]]:
    """Every template, loaded, and those that failed to load (each naming its package)."""
    good: list[Template] = []
    for name in names():
        with contextlib.suppress(TemplateError):  # recorded in _broken
            good.append(get(name))
    return good, sorted(_broken.values(), key=lambda b: b.name)


def broken() -> list[Broken]:
    """The installed templates that failed to load so far in this process."""
    return sorted(_broken.values(), key=lambda b: b.name)


def preload_modules() -> list[str]:
    """The modules of every template that loads: what a warm fork server imports before forking."""
    return sorted({tmpl.module for tmpl in load_all()[0]})


def _load_target(name: str, target: str | EntryPoint, package: str) -> Template:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        obj = getattr(importlib.import_module(module), attr)
    else:
        obj = target.load()
    tmpl = obj if isinstance(obj, Template) else getattr(obj, "__tradelane_template__", None)
    if not isinstance(tmpl, Template):
        raise TemplateError(
            f"{target if isinstance(target, str) else target.value} is not a template "
            "(decorate the flow with @tradelane.templates.template)"
        )
    if tmpl.name != name:
        raise TemplateError(f"the entry point {name!r} points at template {tmpl.name!r}; use one name")
    return tmpl if package == "tradelane" else _with_source(tmpl, package)


def _with_source(tmpl: Template, package: str) -> Template:
    from dataclasses import replace

    return replace(tmpl, source=package)


# -- params ---------------------------------------------------------------------------------------


def parse_param_options(options: Sequence[str]) -> dict[str, Any]:
    """`--param key=value` options → a dict; a value that is JSON (`true`, `3`, `'[...]'`) is decoded.

    A decoded value that the model would refuse where the plain text fits (e.g. `name=123` for a
    string) is retried as text by `check_params`."""
    values: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TemplateError(f"--param {option!r}: expected key=value")
        if key in values:
            raise TemplateError(f"--param {key!r} given twice")
        values[key] = _json_or_text(value)
    return values


@dataclass
class _Decoded:
    """A `--param` value decoded from JSON; its text is retried where the model wants a string."""

    value: Any
    text: str = field(default="")


def _json_or_text(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else _Decoded(value, text)


def checked_params(name: str, raw: dict[str, Any] | None) -> dict[str, Any]:
    """What `flow add --template NAME --param ...` stores: the params checked against the template's
    model. The default template with no params is not loaded (it takes none): `flow add` stays quick."""
    if name == DEFAULT and not raw:
        return {}
    return get(name).check(raw or {})


def routed_destinations(name: str, params: dict[str, Any]) -> list[str] | None:
    """The endpoints a routing template may send to, named by its params (None for a template with
    one destination). A template routes when its params model has `destinations()` (edi-route:
    each rule's `dest`)."""
    if name == DEFAULT:
        return None
    model = get(name).params
    if not callable(getattr(model, "destinations", None)):
        return None
    names: list[str] = model.model_validate(params).destinations()  # type: ignore[attr-defined]
    return names


def destination(name: str, params: dict[str, Any], dest: str | None) -> str:
    """The data flow's destination: the one given, or - for a routing template, which takes none -
    the first its params name (shown as the flow's destination; each file goes where its rule says)."""
    routed = routed_destinations(name, params)
    if routed is None:
        if not dest:
            raise TemplateError("a destination is required: --dest ENDPOINT or mailbox:PARTNER (YAML dest:)")
        return dest
    if dest:
        raise TemplateError(
            f"the {name} template chooses each file's destination from its params "
            f"({', '.join(dict.fromkeys(routed))}): give no --dest (YAML dest:)"
        )
    return routed[0]


def check_params(tmpl: Template, raw: dict[str, Any]) -> dict[str, Any]:
    """Validate params against the template's model; the JSON-able dict of what was given."""
    if not isinstance(raw, dict):
        raise TemplateError(f"template {tmpl.name!r}: params must be a mapping of names to values")
    fields = tmpl.params.model_fields
    known = {f.alias or n for n, f in fields.items()} | set(fields)
    for key in raw:
        if key not in known:
            listed = ", ".join(sorted(fields)) or "none"
            raise TemplateError(f"template {tmpl.name!r} has no param {key!r} (its params: {listed})")
    plain = {k: (v.value if isinstance(v, _Decoded) else v) for k, v in raw.items()}
    try:
        model = tmpl.params.model_validate(plain)
    except ValidationError as exc:
        # `name=123` for a str param: the text was meant, not the number.
        retried = {
            k: (v.text if isinstance(v, _Decoded) and _failed(exc, k) else plain[k]) for k, v in raw.items()
        }
        try:
            model = tmpl.params.model_validate(retried)
        except ValidationError as again:
            raise TemplateError(_explain(tmpl.name, again, retried)) from None
    given = set(raw)
    dumped = model.model_dump(mode="json", by_alias=True)
    return {k: v for k, v in dumped.items() if k in given or _field_name(tmpl.params, k) in given}


def _field_name(model: type[BaseModel], key: str) -> str:
    for name, info in model.model_fields.items():
        if info.alias == key:
            return name
    return key


def _failed(exc: ValidationError, key: str) -> bool:
    return any(err["loc"] and err["loc"][0] == key for err in exc.errors())


def _explain(name: str, exc: ValidationError, given: dict[str, Any]) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "params"
        top = err["loc"][0] if err["loc"] else None
        got = f" (got {given[top]!r})" if top in given else ""
        problems.append(f"param {key!r}: {err['msg']}{got}")
    return f"template {name!r}: " + "; ".join(problems)


def params_of(model: type[BaseModel]) -> list[Param]:
    """The params of a model, as `template show` lists them."""
    out = []
    for name, info in model.model_fields.items():
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        try:
            json.dumps(default)
        except TypeError:
            default = repr(default)
        out.append(
            Param(
                name=info.alias or name,
                type=_type_name(info.annotation),
                required=required,
                default=default,
                description=(info.description or "").strip(),
            )
        )
    return out


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def check_name(name: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").isalnum() or not name.islower():
        raise TemplateError(f"a template's name is lowercase letters, digits, - and _, not {name!r}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
