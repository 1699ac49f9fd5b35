"""What the built-in templates share: their params read from the data flow, and the account's keyring.

A template's params are a pydantic model. A data flow keeps its params as text values (`--param
key=value`, YAML `params:`), so models accept text: "true" for a bool, "a,b" for a list
(`CommaList`), JSON text for structured values.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator
from pydantic import ValidationError as ParamsError

from core.db import session_scope
from core.endpoints.base import ConfigError
from core.models import DataFlow
from core.pgp import keyring
from core.pgp.keyring import Keyring
from core.tenancy import system_scope

Model = TypeVar("Model", bound=BaseModel)


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# `recipients=ops@acme.example,7A3C…` → ["ops@acme.example", "7A3C…"]
CommaList = Annotated[list[str], BeforeValidator(_split)]


def params_of(flow: DataFlow, model: type[Model], given: dict[str, Any] | None = None) -> Model:
    """The data flow's params (or those `given` to the run) as `model`; ConfigError names a bad key."""
    raw = given if given is not None else (getattr(flow, "params", None) or {})
    try:
        return model.model_validate(raw)
    except ParamsError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"data flow {flow.name!r} has bad params ({problems})") from None


def account_keyring(account_id: int) -> Keyring:
    """The PGP keyring of the data flow's account, read once before a file streams."""
    with session_scope() as session:
        return keyring.load(session, system_scope(session, account_id))
