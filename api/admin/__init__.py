"""The admin REST API under /api/admin: what an account's users manage, by bearer token.

The same core functions as the CLI and the console, with the caller's `Scope` (its own account and
role); the same input models as the console (`api/admin/schemas.py`). No cookie is read here, so
no CSRF applies.
"""

from fastapi import APIRouter

from api.admin import endpoints, flows, partners, transfers, users

router = APIRouter(prefix="/admin")
router.include_router(users.me_router)
router.include_router(partners.router)
router.include_router(endpoints.router)
router.include_router(flows.router)
router.include_router(transfers.router)
router.include_router(transfers.audit_router)
router.include_router(users.router)
