"""`/docs` (Swagger UI) and `/redoc`, served with assets vendored in api/static/ (no CDN, no fonts).

FastAPI's own docs pages load their scripts, styles and favicon from jsdelivr, Google Fonts and
fastapi.tiangolo.com, so they are blank without internet; and they start Swagger UI with an inline
script, which a Content-Security-Policy without 'unsafe-inline' refuses. These pages reference only
this server and run only script files from it: Swagger UI is started by `static/web/docs-init.js`
(reading the URLs from the page's data- attributes), ReDoc by its own `<redoc spec-url>` element.
Their CSP is api/web/headers.py's.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{static}/swagger-ui/swagger-ui.css">
<link rel="icon" href="{static}/swagger-ui/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}" data-oauth2-redirect-url="{oauth2_redirect}"></div>
<script src="{static}/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{static}/web/docs-init.js"></script>
</body>
</html>
"""

REDOC_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title>
<link rel="icon" href="{static}/swagger-ui/favicon-32x32.png">
</head>
<body>
<noscript>ReDoc requires JavaScript to be enabled.</noscript>
<redoc spec-url="{openapi}"></redoc>
<script src="{static}/redoc/redoc.standalone.js"></script>
</body>
</html>
"""

OAUTH2_REDIRECT_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Swagger UI: OAuth2 Redirect</title></head>
<body><script src="{static}/web/oauth2-redirect.js"></script></body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve the vendored assets and the two docs pages (create the app with docs_url=None)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")

    def urls(request: Request) -> dict[str, str]:
        prefix = str(request.scope.get("root_path", "")).rstrip("/")
        values = {
            "title": app.title,
            "static": f"{prefix}{STATIC_URL}",
            "openapi": f"{prefix}{app.openapi_url}",
            "oauth2_redirect": f"{prefix}{OAUTH2_REDIRECT_URL}",
        }
        return {name: escape(value) for name, value in values.items()}

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return HTMLResponse(SWAGGER_PAGE.format(**urls(request)))

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return HTMLResponse(OAUTH2_REDIRECT_PAGE.format(**urls(request)))

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return HTMLResponse(REDOC_PAGE.format(**urls(request)))
