"""The web pages: static HTML + vanilla JS served from `service/static/`, no build step.

PAGES maps a URL path to an HTML file in the static folder; add a page by adding a file and a line.
Assets (JS, CSS) are served under /static/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tldrlab.errors import NotFoundError
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.ranges import file_response
from tldrlab.service.routes.artifacts import name_too_long

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
PAGES: dict[str, str] = {
    "/": "index.html",  # the digest page: paste/upload/pick a thread, streamed cited TL;DR, highlights
    "/runs-page": "runs.html",  # trainer service: runs list, live loss chart, artifacts, cancel
}

router = APIRouter(tags=["pages"], route_class=StrictJSONRoute)
NO_CACHE = {"Cache-Control": "no-cache"}


def _page_route(filename: str) -> Callable[[Request], Response]:
    def page(request: Request) -> Response:
        path = STATIC_DIR / filename
        if not path.is_file():
            raise NotFoundError(f"page {filename} is not installed")
        return file_response(request, path, media_type="text/html", headers=NO_CACHE)

    return page


for _path, _file in PAGES.items():
    router.add_api_route(_path, _page_route(_file), methods=["GET"], include_in_schema=False)

MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
FAVICON = "favicon.svg"


@router.get("/static/{name:path}", include_in_schema=False)
def static_file(request: Request, name: str) -> Response:
    """Page assets (the app only includes routers, so static files are served by this route)."""
    try:
        path = (STATIC_DIR / name).resolve()
        found = not name_too_long(name) and path.is_relative_to(STATIC_DIR) and path.is_file()
    except (OSError, ValueError):  # ENAMETOOLONG, NUL bytes, ...: as good as missing
        found = False
    if not found:
        raise NotFoundError("no such static file")
    media_type = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return file_response(request, path, media_type=media_type, headers=NO_CACHE)


@router.get("/favicon.ico", include_in_schema=False)
def favicon(request: Request) -> Response:
    """The site icon where a browser or a feed reader asks for it by its conventional name (the pages link
    it too): without it every page load logged a 404 in the browser's console."""
    return file_response(request, STATIC_DIR / FAVICON, media_type=MEDIA_TYPES[".svg"], headers=NO_CACHE)
