"""The partner API's routers, gathered under one `api_router` mounted at /api."""

from fastapi import APIRouter

from api.routes import authentication, connections, files, folders, health

api_router = APIRouter()
api_router.include_router(authentication.router)
api_router.include_router(folders.router)
api_router.include_router(files.router)
api_router.include_router(health.router)
api_router.include_router(connections.router)
