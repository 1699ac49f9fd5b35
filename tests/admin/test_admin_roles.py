"""The role table (core/roles.py) walked over every changing admin API route: a role that may not do a
route's action gets 403 with the table's words, whatever the route names, and nothing changes.

The routes come from the app itself, so a changing route added later cannot escape the walk (and one
without an action fails it)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from api.admin.deps import ACTION_KEY
from core.db import get_engine
from core.roles import ACTIONS, roles_for
from tests.admin.conftest import PASSWORD, Users
from tests.file_roots import allowed_folder

CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _admin_routes(app: FastAPI) -> list[tuple[str, str, str | None]]:
    """(method, path, action) of every admin API route, as the app documents them (every route is)."""
    return [
        (method.upper(), path, op.get(ACTION_KEY))
        for path, ops in app.openapi()["paths"].items()
        if path.startswith("/api/admin/")
        for method, op in ops.items()
    ]


def _filled(path: str, names: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: names[m.group(1)], path)


def _store() -> dict[str, list[tuple[Any, ...]]]:
    """The rows a changing route could touch (audit events too): to prove a refusal changed nothing."""
    tables = ["partner", "endpoint", "dataflow", "transfer", "accountuser", "auditevent"]
    with get_engine().connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))] for t in tables}


def test_every_changing_route_names_its_action(app: FastAPI) -> None:
    routes = _admin_routes(app)
    assert len(routes) >= 30
    for method, path, action in routes:
        if method in CHANGING:
            assert action in ACTIONS, f"{method} {path} does not say which action of core/roles.py it needs"


def test_a_role_without_the_action_gets_403_on_every_changing_route(app: FastAPI, users: Users) -> None:
    # Real objects, so a refusal cannot be a 404 in disguise.
    op = users.admin
    assert op.post("/api/admin/partners", json={"name": "p-roles", "password": PASSWORD}).is_success
    assert op.post("/api/admin/partners/p-roles/keys", json={"key": _key()}).is_success
    assert op.post(
        "/api/admin/endpoints",
        json={"name": "e-roles", "type": "file", "settings": {"path": str(allowed_folder("acme"))}},
    ).is_success
    assert op.post(
        "/api/admin/flows", json={"name": "f-roles", "source": "mailbox:p-roles", "dest": "e-roles"}
    ).is_success
    names = {
        "name": "p-roles",
        "index": "1",
        "email": "ro@acme.example",
        "transfer_id": "1",
        "type_name": "file",
    }
    bodies = {"PATCH": {}, "PUT": {"password": "Whatever-Pass-99"}, "POST": {}}
    refused: dict[str, set[str]] = {}
    for role in ("read-only", "operator", "admin"):
        user = users.of(role)
        before = _store()
        for method, path, action in _admin_routes(app):
            if action is None or role in ACTIONS[action]:
                continue
            names["name"] = {"/flows/": "f-roles", "/endpoints/": "e-roles"}.get(
                next((part for part in ("/flows/", "/endpoints/") if part in path), ""), "p-roles"
            )
            answer = user.request(method, _filled(path, names), json=bodies.get(method))
            assert answer.status_code == 403, (role, method, path, answer.text)
            wanted = " or ".join(roles_for(action))
            assert answer.json()["message"] == f"this needs the role {wanted}; this login is {role}"
            refused.setdefault(role, set()).add(f"{method} {path}")
        assert _store() == before, f"a refused {role} request changed the store"
    # read-only is refused every route with an action; the operator only the users' routes.
    with_action = {f"{m} {p}" for m, p, action in _admin_routes(app) if action is not None}
    assert refused["read-only"] == with_action and len(with_action) >= 20
    assert refused["operator"] == {r for r in with_action if "/api/admin/users" in r}
    assert "admin" not in refused


def test_read_only_reads_everything_but_users(users: Users) -> None:
    reader = users.reader
    for path in (
        "/api/admin/me",
        "/api/admin/partners",
        "/api/admin/endpoints",
        "/api/admin/endpoint-types",
        "/api/admin/flows",
        "/api/admin/transfers",
        "/api/admin/audit",
    ):
        assert reader.get(path).status_code == 200, path
    assert reader.get("/api/admin/users").status_code == 403


def _key() -> str:
    from tests.admin.helpers import ssh_key

    return ssh_key()
