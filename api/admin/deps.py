"""Who calls the admin API, and what it may change.

`AdminScope` is the scope of an account user's bearer token (`POST /api/authentication` with the
user's e-mail address): its own account, its own role. A partner's token is refused with 403.
`needs(action)` also refuses, before anything is read, a role that may not do the action
(core/roles.py, the one table): the route's refusal does not depend on whether the object it
names exists. Core checks the same again, so no route can forget it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from api import errors
from api.bodies import BoundedBodyRoute
from api.deps import CurrentUser, ScopeDep
from core import audit
from core.endpoints.errors import EndpointError
from core.errors import StatusError
from core.roles import Action, roles_for
from core.tenancy import Scope

# The action a changing route needs, kept on the route (`openapi_extra`) for the docs and the
# test that walks every changing route as each role.
ACTION_KEY = "x-tradelane-action"

REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid input; the message says which field and why"},
    401: {"description": "missing, expired or revoked bearer token"},
    403: {"description": "a partner's token, or a role that may not do this"},
    404: {"description": "no such object in this account"},
    409: {"description": "the object's state does not allow it (in use, exists, running)"},
}


def get_admin_scope(user: CurrentUser, scope: ScopeDep) -> Scope:
    """The account user's scope (a partner's token is refused by CurrentUser: 403)."""
    return scope


AdminScope = Annotated[Scope, Depends(get_admin_scope)]


def needs(action: Action) -> Any:
    """A dependency giving the scope of a user whose role may do `action`; 403 otherwise."""

    def check(scope: AdminScope) -> Scope:
        scope.require_to(action)
        return scope

    check.__name__ = f"needs_{action.replace('.', '_')}"
    return Depends(check)


def changing(action: Action) -> dict[str, Any]:
    """A changing route's keyword arguments: its action and who may do it, in the OpenAPI document."""
    return {
        "responses": REFUSALS,
        "openapi_extra": {ACTION_KEY: action, "x-tradelane-roles": list(roles_for(action))},
    }


@contextmanager
def core_refusals() -> Iterator[None]:
    """Refusals core raises without a status answered as 400 with their words, as the CLI prints
    them (`error: ...`): a ValueError (a weak password, a template's params), an endpoint's
    settings that do not fit its type, a name that names nothing. Refusals with a status pass as
    they are."""
    try:
        yield
    except StatusError:
        raise
    except (ValueError, EndpointError, LookupError) as exc:
        raise errors.BadRequest(str(exc)) from None


class BoundedRoute(BoundedBodyRoute):
    """An admin route whose request body is read to at most MAX_BODY_BYTES (api/bodies.py: 413 past
    it, before the rest is read; every changing request's), whose audit events carry the request's
    address, and whose core refusals without a status are 400s (`core_refusals`)."""

    cap_every_change = True

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def audited(request: Request) -> Response:
            # What the route changes is audited with where the request came from.
            with audit.requests_from(request.client.host if request.client else None), core_refusals():
                return await handler(request)

        return audited
