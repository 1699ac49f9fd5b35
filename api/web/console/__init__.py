"""The account console (`/console`): server-rendered pages for an account's users, sharing core's
services (and their role checks) with the CLI and the admin API. Every route takes the logged-in
login as a `Scope` from `deps.console_scope`, a placeholder until the web session lands (web1a):
the integrator points that one function at the session dependency.

    router = api.web.console.router   # app.include_router(router)
"""

from __future__ import annotations

from fastapi import APIRouter

from api.web.console import audit, endpoints, flows, partners, transfers

router = APIRouter(include_in_schema=False)
router.include_router(partners.router)
router.include_router(endpoints.router)
router.include_router(flows.router)
router.include_router(transfers.router)
router.include_router(audit.router)

__all__ = ["router"]
