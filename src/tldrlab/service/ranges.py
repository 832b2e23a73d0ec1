"""Files sent over HTTP with range requests (`Range: bytes=a-b`), by the rules of RFC 9110 section 14.

    return file_response(request, path, filename=path.name)   # /files, /artifacts, pages, static files

Without a `Range` header the file goes out as a `FileResponse`. With one, this module decides and sends the
answer itself (Starlette's own range handling is private API and answers errors in plain text):

- a malformed header (`bytes=abc`, `items=0-9`, `bytes=50-10`, digits with `_` or `+`) is a 400 with the API's
  JSON error naming it;
- no satisfiable range (every range starts past the end, or a `-0` suffix) is a 416 with
  `Content-Range: bytes */<size>`, so the client can ask again within the file;
- an `If-Range` validator that is not the file's current ETag or Last-Modified (or a weak one) means the
  client's copy is stale: the whole file is sent, the range ignored (as the RFC requires);
- the satisfiable ranges, overlapping or adjacent ones merged, are sent as a 206 when they make one range
  (ranges past the end are dropped, as a range set is satisfiable when any range in it is); several
  separate ranges get the whole file with 200, which the RFC allows and every client handles.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from email.utils import formatdate
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from tldrlab.errors import InvalidInputError

CHUNK_BYTES = 64 * 1024
# first-pos "-" [last-pos], or "-" suffix-length: ASCII digits only (int() takes "+1", "1_0" and other
# scripts' digits), and few enough that int() reads them (it refuses thousands)
_RANGE_SPEC = re.compile(r"([0-9]{0,30})-([0-9]{0,30})")


def parse_ranges(header: str, size: int) -> list[tuple[int, int]]:
    """The byte ranges `header` asks of a `size`-byte file, as (start, end) with `end` exclusive, sorted,
    overlapping and adjacent ones merged, those past the end dropped. InvalidInputError for a malformed
    header; HTTPException 416 (with `Content-Range: bytes */size`) when no range is satisfiable."""
    unit, sep, range_set = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise InvalidInputError(f"bad Range header {header!r}: only 'bytes=first-last' ranges are served")
    ranges: list[tuple[int, int]] = []
    specs = [spec.strip() for spec in range_set.split(",")]
    for spec in [spec for spec in specs if spec] or [""]:  # empty list elements are ignored (RFC 9110 5.6.1)
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None or match.group(0) == "-":
            raise InvalidInputError(
                f"bad Range header {header!r}: {spec.strip()!r} is not first-last or -suffix"
            )
        first, last = match.groups()
        if not first:  # the last `last` bytes
            if int(last) > 0 and size > 0:
                ranges.append((max(size - int(last), 0), size))
            continue
        if last and int(last) < int(first):
            raise InvalidInputError(f"bad Range header {header!r}: a range ends before it starts")
        if int(first) < size:
            ranges.append((int(first), min(int(last) + 1, size) if last else size))
    if not ranges:
        # the size, so the client can ask again within the file
        raise HTTPException(
            416,
            f"Range {header!r}: no range within the file ({size} bytes)",
            headers={"Content-Range": f"bytes */{size}"},
        )
    merged = [min(ranges)]
    for start, end in sorted(ranges)[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def validators(stat: os.stat_result) -> dict[str, str]:
    """The file's ETag and Last-Modified: sent with every answer, compared with a request's `If-Range`."""
    tag = hashlib.sha256(f"{stat.st_mtime_ns}-{stat.st_size}".encode()).hexdigest()[:32]
    return {"etag": f'"{tag}"', "last-modified": formatdate(stat.st_mtime, usegmt=True)}


def file_response(
    request: Request,
    path: Path,
    *,
    filename: str | None = None,
    media_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """`path` as the answer to `request`: whole, or the part its `Range` header asks for (see module);
    `headers` (Cache-Control, ...) go with either."""
    stat = path.stat()
    whole = FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        stat_result=stat,
        headers={**validators(stat), **(headers or {})},
    )
    header = request.headers.get("range")
    if header is None:
        return whole  # FileResponse handles no range itself without a Range header
    if_range = request.headers.get("if-range")
    fresh = if_range is None or (
        not if_range.startswith("W/") and if_range in (whole.headers["etag"], whole.headers["last-modified"])
    )
    ranges = parse_ranges(header, stat.st_size) if fresh else []
    headers = {k: v for k, v in whole.headers.items() if k not in ("content-length", "content-type")}
    headers["accept-ranges"] = "bytes"
    if len(ranges) != 1:  # a stale copy, or separate ranges: the whole file
        return StreamingResponse(
            _read(path, 0, stat.st_size),
            media_type=whole.media_type,
            headers={**headers, "content-length": str(stat.st_size)},
        )
    start, end = ranges[0]
    headers["content-range"] = f"bytes {start}-{end - 1}/{stat.st_size}"
    headers["content-length"] = str(end - start)
    return StreamingResponse(
        _read(path, start, end), status_code=206, media_type=whole.media_type, headers=headers
    )


def _read(path: Path, start: int, end: int) -> Iterator[bytes]:
    """Bytes `start` to `end` (exclusive) of `path`, in chunks (the server iterates it in a thread)."""
    with path.open("rb") as handle:
        handle.seek(start)
        left = end - start
        while left > 0:
            chunk = handle.read(min(CHUNK_BYTES, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
