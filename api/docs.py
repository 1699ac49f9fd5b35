"""`/docs` (Swagger UI) and `/redoc`, served with assets vendored in api/static/ (no CDN, no fonts).

FastAPI's own docs pages load their scripts, styles and favicon from jsdelivr, Google Fonts and
fastapi.tiangolo.com, so they are blank without internet. These pages reference only this server.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


def install(app: FastAPI) -> None:
    """Serve the vendored assets and the two docs pages (create the app with docs_url=None)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_swagger_ui_html(
            openapi_url=f"{prefix}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{prefix}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{prefix}{STATIC_URL}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{prefix}{STATIC_URL}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{prefix}{STATIC_URL}/swagger-ui/favicon-32x32.png",
            # Swagger UI would otherwise show a badge image fetched from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_redoc_html(
            openapi_url=f"{prefix}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{prefix}{STATIC_URL}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{prefix}{STATIC_URL}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
