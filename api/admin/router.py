"""The admin API's routes, gathered under /admin (mounted at /api by api/app.py)."""

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
