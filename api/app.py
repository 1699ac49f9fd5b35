"""The FastAPI application: the partner REST API under /api, OpenAPI docs at /docs and /redoc, the
web's login (/login) and its portal and console pages.

Run it with `uvicorn --factory api.app:create_app`; the database must be initialised first
(`core.db.init_db()`, which `tradelane up` does).
"""

from __future__ import annotations

from fastapi import FastAPI

from api import docs, errors
from api.admin.router import router as admin_router
from api.routes import api_router, peer_uploads
from api.routes.as2 import router as as2_router
from api.routes.peer import router as peer_router
from api.web import auth, connect, console, portal, tus
from api.web.headers import SecurityHeaders
from api.web.service import AcceptService

DESCRIPTION = """\
The tradelane partner API, shaped like Cleo Integration Cloud's: authenticate with
`POST /api/authentication`, find your home folder with `GET /api/folders`, its `upload` and
`download` folders with `GET /api/folders/{id}/children`, and upload by posting the raw bytes to
`/api/folders/{upload id}/files` with `Content-Disposition: attachment; filename=...`.
An account's users authenticate with their e-mail address the same way; their home holds `b2b`,
whose children are the account's B2B outboxes.
Every error is JSON: `{"message": "..."}`.
"""


def create_app(accept_service: AcceptService | None = None) -> FastAPI:
    """The app; with `accept_service`, also the invitation accept page (/connect/accept)."""
    app = FastAPI(
        title="tradelane",
        description=DESCRIPTION,
        version="0.1.0",
        docs_url=None,  # api/docs.py serves /docs and /redoc with vendored assets
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.add_middleware(SecurityHeaders)  # CSP, framing, referrer, nosniff: api/web/headers.py
    errors.install(app)
    docs.install(app)
    # First: routes are matched in order, and an AS2 message (a partner's hot path) would be
    # compared with every /api route before its own.
    app.include_router(as2_router)  # /as2/receive and /as2/mdn: AS2 partners, no token
    app.include_router(api_router, prefix="/api")
    app.include_router(admin_router, prefix="/api")  # /api/admin: account users manage their account
    app.include_router(peer_uploads.router())  # /peer/v1/connections/{uid}/uploads: signed by a peer
    app.include_router(peer_router)  # /peer/v1: other tradelane instances, signed requests
    auth.install(app)  # /, /login, /logout, /portal, /console: the web's session (api/web/auth.py)
    console.install(app)  # /console/*: the account console (api/web/console/)
    portal.install(app)  # /portal/...: the partner portal's pages (api/web/portal.py)
    tus.install(app)  # /portal/uploads: the portal's resumable uploads (api/web/tus.py)
    if accept_service is not None:
        connect.install(app, accept_service)
    return app
