"""The web pages: static HTML + vanilla JS served from `service/static/`, no build step.

PAGES maps a URL path to an HTML file in the static folder; add a page by adding a file and a line.
Assets (JS, CSS) are served under /static/.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from tldrlab.errors import NotFoundError
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.routes.artifacts import name_too_long

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
PAGES: dict[str, str] = {
    "/": "index.html",  # the digest page: paste/upload/pick a thread, streamed cited TL;DR, highlights
    "/runs-page": "runs.html",  # trainer service: runs list, live loss chart, artifacts, cancel
}

router = APIRouter(tags=["pages"], route_class=StrictJSONRoute)


def _page_route(filename: str) -> FileResponse:
    path = STATIC_DIR / filename
    if not path.is_file():
        raise NotFoundError(f"page {filename} is not installed")
    return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})


for _path, _file in PAGES.items():
    router.add_api_route(
        _path, lambda _file=_file: _page_route(_file), methods=["GET"], include_in_schema=False
    )

MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png"}


@router.get("/static/{name:path}", include_in_schema=False)
def static_file(name: str) -> FileResponse:
    """Page assets (the app only includes routers, so static files are served by this route)."""
    try:
        path = (STATIC_DIR / name).resolve()
        found = not name_too_long(name) and path.is_relative_to(STATIC_DIR) and path.is_file()
    except (OSError, ValueError):  # ENAMETOOLONG, NUL bytes, ...: as good as missing
        found = False
    if not found:
        raise NotFoundError("no such static file")
    media_type = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})
