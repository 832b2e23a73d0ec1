"""The file store over HTTP: `POST /files` stores a file under its sha256, `GET /files/{sha256}` sends it back
(streamed, with range requests), so workers on several machines share one store (`file_store =
"http://host:8000"` on them).

    curl --data-binary @run.tar.gz -H 'content-type: application/octet-stream' \
         'localhost:8000/files?sha256=<expected>'              # -> {"sha256", "size_bytes", "created"}
    curl -r 0-1023 localhost:8000/files/<sha256>               # the first KiB (206)

The body is streamed to disk while its sha256 is computed and refused with 413 past `TLDRLAB_MAX_FILE_BYTES`;
with `?sha256=` a body whose hash differs is refused (400) and nothing is kept. A file is only ever stored
under the hash of its bytes, so a client checks what it downloads by hashing it. Auth as the rest of the API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from tldrlab.errors import InvalidInputError
from tldrlab.runs.filestore import DirectoryFileStore, check_sha256
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.ranges import file_response
from tldrlab.service.state import settings_of

router = APIRouter(tags=["files"], route_class=StrictJSONRoute)


class StoredFileInfo(BaseModel):
    """A file in the store."""

    sha256: str = Field(description="The file's id: the sha256 of its bytes.")
    size_bytes: int
    created: bool = Field(description="False when the store already had these bytes.")


def local_store(request: Request) -> DirectoryFileStore:
    """The directory this server keeps files in (`file_store`, default `<home>/files`)."""
    return DirectoryFileStore(settings_of(request).files_dir)


@router.post("/files", status_code=201, response_model=StoredFileInfo)
async def upload_file(
    request: Request,
    sha256: str | None = Query(
        None, min_length=64, max_length=64, description="The body's sha256: refused (400) when it differs."
    ),
) -> dict[str, Any]:
    """Store the request body (raw bytes) under its sha256."""
    if sha256 is not None:
        check_sha256(sha256)
    incoming = local_store(request).incoming(settings_of(request).max_file_bytes)
    try:
        async for chunk in request.stream():
            incoming.write(chunk)
        if incoming.size == 0:
            raise InvalidInputError("the request body is empty: send the file's bytes")
        stored, created = incoming.commit(sha256)
    except BaseException:
        incoming.abort()
        raise
    return {"sha256": stored.sha256, "size_bytes": stored.size, "created": created}


@router.get("/files/{sha256}", response_class=FileResponse)
def download_file(request: Request, sha256: str) -> Response:
    """The file whose sha256 this is (`Range: bytes=a-b` for a part of it)."""
    path = local_store(request).open(check_sha256(sha256))
    return file_response(request, path, media_type="application/octet-stream", filename=sha256)


@router.head("/files/{sha256}")
def file_size(request: Request, sha256: str) -> Response:
    """200 with `Content-Length` when the store has the file, else 404."""
    path = local_store(request).open(check_sha256(sha256))
    size = path.stat().st_size
    return Response(
        status_code=200,
        headers={"content-length": str(size), "accept-ranges": "bytes"},
        media_type="application/octet-stream",
    )
