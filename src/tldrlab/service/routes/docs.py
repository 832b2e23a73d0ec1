"""The API documentation pages, /docs (Swagger UI) and /redoc (ReDoc), served entirely by this server.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so offline they are blank. Here the assets come
from the `fastapi-offline` package (Swagger UI 5, Apache-2.0, and ReDoc, MIT, as released by their
authors; the package itself is MIT) and the pages start them with scripts from `service/static/`, so no
inline script and no other host is needed.
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from tldrlab.errors import NotFoundError
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.ranges import file_response

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
"""The files of the asset package that the pages use (nothing else of it is served)."""

router = APIRouter(tags=["docs"], route_class=StrictJSONRoute)


def assets_dir() -> Path:
    """Where the installed `fastapi-offline` package keeps Swagger UI and ReDoc."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def _page(request: Request, title: str, head: str, body: str) -> HTMLResponse:
    root = html.escape(request.scope.get("root_path", ""), quote=True)
    openapi = html.escape(f"{request.scope.get('root_path', '')}{request.app.openapi_url}", quote=True)
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="icon" href="{root}/docs/assets/favicon.png">{head.format(root=root)}</head>'
        f"<body>{body.format(root=root, openapi=openapi)}</body></html>"
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    return _page(
        request,
        f"{request.app.title} API",
        '<link rel="stylesheet" href="{root}/docs/assets/swagger-ui.css">',
        '<div id="swagger-ui" data-openapi-url="{openapi}" '
        'data-oauth2-redirect-url="{root}/docs/oauth2-redirect"></div>'
        '<script src="{root}/docs/assets/swagger-ui-bundle.js"></script>'
        '<script src="{root}/static/docs-swagger.js"></script>',
    )


@router.get("/docs/oauth2-redirect", include_in_schema=False)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", include_in_schema=False)
def redoc(request: Request) -> HTMLResponse:
    return _page(
        request,
        f"{request.app.title} API",
        "",
        '<div id="redoc" data-openapi-url="{openapi}"></div>'
        '<script src="{root}/docs/assets/redoc.standalone.js"></script>'
        '<script src="{root}/static/docs-redoc.js"></script>',
    )


@router.get("/docs/assets/{name}", include_in_schema=False)
def asset(request: Request, name: str) -> Response:
    if name not in ASSETS:
        raise NotFoundError("no such documentation asset")
    path = assets_dir() / name
    if not path.is_file():
        raise NotFoundError(f"documentation asset {name} is not installed (pip install fastapi-offline)")
    cache = {"Cache-Control": "max-age=86400"}
    return file_response(request, path, media_type=ASSETS[name], headers=cache)  # ranges as the API answers
