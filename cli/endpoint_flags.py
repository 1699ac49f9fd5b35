"""The flags of `tradelane endpoint add` and `endpoint set`, made from the endpoint types' models.

Every field of a type's settings and secrets models (core/endpoints/settings.py) is a flag: the
field's `Flag` metadata names it (`--tls`, `--key FILE`, `--insecure`), else it is `--field-name
VALUE` (a bool: `--name/--no-name`; a list or a map: repeatable). The command takes the flags of
every type registered when it runs, so a new type's flags need no code here; a flag that does not
belong to the chosen type is refused, naming the type's own. The values are checked by the models,
and a problem is said with the flag that set it.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer
import typer.main
from pydantic.fields import FieldInfo
from typer.core import TyperCommand

from core.endpoints.base import Endpoint
from core.endpoints.registry import endpoint_class, user_types
from core.endpoints.settings import (
    EndpointSecrets,
    EndpointSettings,
    Flag,
    Problem,
    SettingsError,
    local_paths,
    switch,
)

Settings = tuple[dict[str, Any], dict[str, Any]]
# What `endpoint add` and `endpoint set` take for themselves: no type may use these flags.
RESERVED = frozenset(
    {"--type", "--replace", "--no-replace", "--unset", "--accept-host-key", "--no-accept-host-key", "--help"}
)
DEST_PREFIX = "setting__"


class FlagError(ValueError):
    """A flag that does not apply, or whose value cannot be read; the message names it."""


@dataclass(frozen=True)
class FlagUse:
    """One flag of one endpoint type: which field of which model it sets, and how."""

    flag: str
    key: str  # the field's key, as stored and in YAML
    secret: bool
    spec: Flag
    repeat: bool  # a list or a map: the flag may be given several times
    is_map: bool
    help: str

    @property
    def dest(self) -> str:
        return DEST_PREFIX + self.flag.lstrip("-").replace("-", "_")


def _origins(annotation: Any) -> set[Any]:
    """The container types (list, tuple, dict) a field's type is or may be."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_origins(arg) for arg in typing.get_args(annotation)))
    return {typing.get_origin(annotation) or annotation}


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _uses_of(model: type[EndpointSettings] | type[EndpointSecrets], secret: bool) -> list[FlagUse]:
    uses = []
    for name, field in model.model_fields.items():
        uses += _field_uses(model.key_of(name), field, secret)
    return uses


def _field_uses(key: str, field: FieldInfo, secret: bool) -> list[FlagUse]:
    origins = _origins(field.annotation)
    specs = [item for item in field.metadata if isinstance(item, Flag)]
    if not specs:
        dashed = key.replace("_", "-")
        if origins <= {bool, type(None)}:
            specs = [
                switch(f"--{dashed}", True),
                switch(f"--no-{dashed}", False, f"The opposite of --{dashed}."),
            ]
        else:
            specs = [Flag(f"--{dashed}")]
    repeat = bool(origins & {list, tuple, set, dict})
    return [
        FlagUse(
            flag=spec.name,
            key=key,
            secret=secret,
            spec=spec,
            repeat=repeat and not spec.is_switch,
            is_map=dict in origins,
            help=_one_line(spec.help or field.description),
        )
        for spec in specs
        if spec.name is not None
    ]


def type_flags(cls: type[Endpoint]) -> dict[str, FlagUse]:
    """The flags of one endpoint type, by flag."""
    uses = _uses_of(cls.settings_model, False) + _uses_of(cls.secrets_model, True)
    flags: dict[str, FlagUse] = {}
    for use in uses:
        if use.flag in RESERVED or use.flag in flags:
            raise TypeError(f"endpoint type {cls.scheme}: flag {use.flag} is used twice or reserved")
        flags[use.flag] = use
    return flags


def all_flags() -> dict[str, list[tuple[str, FlagUse]]]:
    """Every flag of every type an operator adds: flag → [(type, use)]."""
    found: dict[str, list[tuple[str, FlagUse]]] = {}
    for scheme in user_types():
        for flag, use in type_flags(endpoint_class(scheme)).items():
            found.setdefault(flag, []).append((scheme, use))
    return found


def _help(uses: list[tuple[str, FlagUse]]) -> str:
    """One help line for a flag several types use: "s3, azure: key prefix. sftp: …"."""
    by_text: dict[str, list[str]] = {}
    for scheme, use in uses:
        by_text.setdefault(use.help, []).append(scheme)
    if len(uses) == 1:
        return uses[0][1].help
    return " ".join(f"{', '.join(schemes)}: {text}" for text, schemes in by_text.items())


def click_options() -> list[Any]:
    """One option per flag, for the types registered now. Made the public way: typer builds them
    from a signature, as it does for any command."""
    parameters = []
    # Grouped by type in --help: each type's own flags, then those several types share.
    for flag, uses in sorted(
        all_flags().items(), key=lambda item: (len(item[1]) > 1, item[1][0][0], item[0])
    ):
        kinds = {(use.spec.is_switch, use.repeat) for _, use in uses}
        if len(kinds) > 1:
            raise TypeError(f"flag {flag} is a switch for one endpoint type and takes a value for another")
        is_switch, repeat = kinds.pop()
        envvars = sorted({use.spec.envvar for _, use in uses if use.spec.envvar}) or None
        schemes = sorted({scheme for scheme, _ in uses})
        panel = f"{schemes[0]} settings" if len(schemes) == 1 else "Settings of several types"
        option = typer.Option(
            flag, help=_help(uses), envvar=envvars, show_default=False, rich_help_panel=panel
        )
        kind: Any = bool if is_switch else list[str] | None if repeat else str | None
        parameters.append(
            inspect.Parameter(
                uses[0][1].dest,
                inspect.Parameter.KEYWORD_ONLY,
                default=False if is_switch else None,
                annotation=Annotated[kind, option],
            )
        )

    def flags(**_: Any) -> None:
        """Never called: only its signature is used."""

    flags.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    holder = typer.Typer(add_completion=False)
    holder.command()(flags)
    return list(typer.main.get_command(holder).params)


class EndpointFlagsCommand(TyperCommand):
    """A command that also takes every endpoint type's flags; its callback finds them, as given,
    in `ctx.meta["endpoint_flags"]` (flag → value) and `ctx.meta["endpoint_flags_from_env"]`."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        for param in params:
            if "--type" in getattr(param, "opts", ()):
                param.help = f"One of: {', '.join(user_types())}."
        return [*params[:-1], *click_options(), *params[-1:]]

    def invoke(self, ctx: Any) -> Any:
        given: dict[str, Any] = {}
        from_env: set[str] = set()
        for option in click_options():
            value = ctx.params.pop(option.name, None)
            flag = option.opts[0]
            if value in (None, False, (), []):
                continue
            given[flag] = value
            source = ctx.get_parameter_source(option.name)
            if source is not None and source.name == "ENVIRONMENT":
                from_env.add(flag)
        ctx.meta["endpoint_flags"] = given
        ctx.meta["endpoint_flags_from_env"] = from_env
        return super().invoke(ctx)


def settings_from_flags(
    cls: type[Endpoint], given: Mapping[str, Any], from_env: set[str] | None = None
) -> Settings:
    """The (config, secrets) the flags given say, for endpoint type `cls`; FlagError for a flag
    of another type (one from the environment is ignored there) or a value that cannot be read."""
    flags = type_flags(cls)
    config: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    by_key: dict[tuple[bool, str], str] = {}
    for flag, value in given.items():
        use = flags.get(flag)
        if use is None:
            if flag in (from_env or set()):
                continue
            own = " ".join(sorted(flags))
            raise FlagError(f"{flag} does not apply to --type {cls.scheme} (its flags: {own})")
        target = secrets if use.secret else config
        values = _read(use, value)
        for key in values:
            if (use.secret, key) in by_key:
                raise FlagError(f"give {by_key[use.secret, key]} or {flag}, not both")
            by_key[use.secret, key] = flag
        target.update(values)
    return local_paths(cls.settings_model, config), local_paths(cls.secrets_model, secrets)


def _read(use: FlagUse, value: Any) -> dict[str, Any]:
    """The keys and values one flag gives."""
    spec = use.spec
    if spec.is_switch:
        return {use.key: spec.switch}
    try:
        if spec.spread is not None:
            return spec.spread(value)
        if not use.repeat:
            return {use.key: spec.parse(value) if spec.parse else value}
        items = [spec.parse(item) if spec.parse else item for item in value]
        return {use.key: dict(items) if use.is_map else items}
    except OSError as exc:
        raise FlagError(f"{use.flag}: cannot read {value}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise FlagError(f"{use.flag}: {exc}") from None


def defaults_for_add(cls: type[Endpoint], config: dict[str, Any], secrets: dict[str, Any]) -> None:
    """What `endpoint add` fills in for flags not given that say what the CLI defaults them to."""
    for use in type_flags(cls).values():
        target = secrets if use.secret else config
        if use.spec.cli_default is not None and use.key not in target:
            value = use.spec.cli_default(config, secrets)
            if value is not None:
                target[use.key] = value


def describe(error: SettingsError, cls: type[Endpoint]) -> str:
    """The models' problems said with the flags that set each key: `--type file needs --path`."""
    flags: dict[tuple[bool, str], str] = {}
    for flag, use in type_flags(cls).items():
        flags.setdefault((use.secret, use.key), flag)
    lines = []
    for problem in error.problems:
        named = flags.get((problem.secret, str(problem.loc[0]))) if problem.loc else None
        lines.append(_describe(error, problem, named))
    return "; ".join(lines)


def _describe(error: SettingsError, problem: Problem, flag: str | None) -> str:
    key = ".".join(str(part) for part in problem.loc)
    if problem.kind == "missing" and flag:
        return f"--type {error.scheme} needs {flag}"
    if flag and problem.kind == "invalid":
        return error.describe(problem, f"{key!r} ({flag})")
    return error.describe(problem)


def endpoint_options(type_: str, given: Mapping[str, Any]) -> Settings:
    """The (config, secrets) of flags given by their option names (`host_key` for --host-key),
    for scripts that build endpoints the way the CLI does."""
    flags = {"--" + key.replace("_", "-"): value for key, value in given.items() if value is not None}
    return settings_from_flags(endpoint_class(type_), flags)
