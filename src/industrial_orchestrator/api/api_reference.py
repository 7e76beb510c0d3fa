"""ReDoc's page at /redoc, drawn with the script of the ``fastapi-offline`` package (which
also serves Swagger UI at /docs) so that the API reference renders with no internet.

ReDoc draws a "powered by" logo that it fetches from its vendor's CDN; the page's
Content-Security-Policy keeps the browser from asking for it, so opening the reference
tells no third party that the operator did.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from starlette.responses import HTMLResponse

REDOC_PATH = "/redoc"
IMAGES_FROM_HERE_ONLY = "img-src 'self' data:"


def install_redoc(app: FastAPI, assets: str) -> None:
    """Serve ReDoc at ``/redoc`` with its script from ``assets`` (a path of this server)."""

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{assets}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = IMAGES_FROM_HERE_ONLY
        return page
