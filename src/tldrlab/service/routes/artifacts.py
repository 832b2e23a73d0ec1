"""Artifact downloads: `GET /artifacts/{kind}/{id}` lists a run's files, `GET /artifacts/{kind}/{id}/{path}`
sends one.

Downloads are confined to the run directory: the path is refused when, after the server's one URL
decoding, it still holds `%` (double encoding), `..`, a backslash, a NUL or a drive/absolute prefix, when
it resolves outside the run directory, or when any component is a symlink.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from tldrlab.errors import InvalidInputError, NotFoundError, UnknownKindError
from tldrlab.kinds import recorded_kind_names
from tldrlab.runs import RunRecord
from tldrlab.runs.ownership import LOCK_FILE
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.ranges import file_response
from tldrlab.service.state import registry

router = APIRouter(tags=["artifacts"], route_class=StrictJSONRoute)
HIDDEN = {"manifest.json.tmp", LOCK_FILE}


class ArtifactFile(BaseModel):
    path: str
    size: int


class ArtifactListing(BaseModel):
    kind: str
    id: str
    files: list[ArtifactFile]


def _run(request: Request, kind: str, run_id: str) -> RunRecord:
    record = registry(request).get(run_id)
    try:  # a kind under its current or old name, as GET /runs?kind= lists it (evaluate and eval)
        names = recorded_kind_names(kind)
    except UnknownKindError:
        names = (kind,)  # no run has it: the 404 below
    if record.kind not in names:
        raise NotFoundError(f"no {kind} run with id {run_id!r}")
    return record


NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4096


def name_too_long(relative: str) -> bool:
    """Whether a relative path has a component the file system could not even look up (ENAMETOOLONG)."""
    encoded = relative.encode("utf-8", errors="surrogateescape")
    return len(encoded) > PATH_MAX_BYTES or any(len(part) > NAME_MAX_BYTES for part in encoded.split(b"/"))


def confined_path(root: Path, relative: str) -> Path:
    """`root / relative` if it is a regular file inside `root` reached without symlinks; else an error."""
    if name_too_long(relative):
        raise NotFoundError("no such artifact file")
    bad = (
        not relative
        or "\x00" in relative
        or "\\" in relative
        or "%" in relative
        or relative.startswith("/")
        or (len(relative) > 1 and relative[1] == ":")
        or any(part in ("..", ".") for part in relative.split("/"))
    )
    if bad:
        raise InvalidInputError("artifact path not allowed: use a plain relative path inside the run")
    root = root.resolve()
    candidate = root
    try:
        for part in relative.split("/"):
            if not part:
                continue
            candidate = candidate / part
            if candidate.is_symlink():
                raise InvalidInputError("artifact path not allowed: it goes through a symbolic link")
        found = candidate.resolve().is_relative_to(root) and candidate.is_file()
    except (OSError, ValueError):  # unreadable or unrepresentable names: as good as missing
        found = False
    if not found:
        raise NotFoundError("no such artifact file")
    return candidate


@router.get("/artifacts/{kind}/{run_id}", response_model=ArtifactListing)
def list_artifacts(request: Request, kind: str, run_id: str) -> dict[str, Any]:
    record = _run(request, kind, run_id)
    root = Path(record.run_dir).resolve()
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.name in HIDDEN:
            continue
        files.append({"path": str(path.relative_to(root)), "size": path.stat().st_size})
    return {"kind": kind, "id": record.id, "files": files}


@router.get("/artifacts/{kind}/{run_id}/{relative:path}")
def download_artifact(request: Request, kind: str, run_id: str, relative: str) -> Response:
    record = _run(request, kind, run_id)
    path = confined_path(Path(record.run_dir), relative)
    if path.name in HIDDEN:
        raise NotFoundError("no such artifact file")
    return file_response(request, path, filename=path.name)  # ranges as on /files
