"""Data sets API clients bring: `POST /datasets` uploads a file, `GET /datasets` lists them; run configs name
one as `dataset:<id>` (API runs read nothing else outside the data roots and run directories).

    curl --data-binary @train.jsonl -H 'content-type: application/octet-stream' \
         'localhost:8000/datasets?name=train.jsonl&license=CC-BY-4.0&source_url=https://example.org/data'

The body is streamed to disk (never held in memory) while its sha256 is computed, and refused with 413 past
`TLDRLAB_MAX_UPLOAD_BYTES`; the format is detected (or checked, when given) and records are counted for files
up to `COUNT_RECORDS_UP_TO` bytes. Responses never carry server paths.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from tldrlab.config import Settings
from tldrlab.errors import (
    InvalidInputError,
    InvalidRequestError,
    PayloadTooLargeError,
    TldrlabError,
    validation_problems,
)
from tldrlab.runs.datasets import (
    DatasetProvenance,
    DatasetRecord,
    datasets_dir,
    new_dataset_id,
    open_datasets,
    safe_file_name,
)
from tldrlab.service.confine import public_paths
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.state import settings_of

router = APIRouter(tags=["datasets"], route_class=StrictJSONRoute)
COUNT_RECORDS_UP_TO = 50 * 1024 * 1024
"""Uploads up to this size get their records counted at upload (bigger ones: `records` is null)."""


class DatasetInfo(BaseModel):
    """A registered data set (name it in run configs as `dataset:<id>`)."""

    id: str
    name: str
    sha256: str
    size_bytes: int
    source: str
    created_at: float
    format: str | None = Field(default=None, description="Reader format (tldrlab.data.readers).")
    records: int | None = Field(default=None, description="Records (or threads) read, when counted.")
    extra: dict[str, Any] = Field(default_factory=dict)


class DatasetList(BaseModel):
    datasets: list[DatasetInfo]
    count: int


def _describe(path: Path, name: str, format: str | None, settings: Settings) -> tuple[str, int | None]:
    """(format, records or None) of an uploaded file; InvalidInputError when tldrlab cannot read it."""
    # lazy: loads bs4, lxml (this module stays light without them)
    from tldrlab.data.readers import READERS, detect_format, read_records_report, read_threads_report

    try:
        found = format or detect_format(path)
        if found not in READERS:
            raise InvalidInputError(f"unknown format {found!r}; known: {', '.join(sorted(READERS))}")
        if path.stat().st_size > COUNT_RECORDS_UP_TO:
            return found, None
        read = read_records_report if READERS[found].kind == "records" else read_threads_report
        return found, len(read(path, found, skip_invalid=True).items)
    except TldrlabError as exc:  # reader messages name the file: name it as the client did
        raise InvalidInputError(public_paths(exc.message.replace(str(path), name), settings)) from None
    except (ValueError, RecursionError) as exc:  # what readers let through on hostile files (deep JSON, ...)
        raise InvalidInputError(f"{name}: not a data file tldrlab can read ({type(exc).__name__})") from None


def _described(field: str) -> str | None:
    return DatasetProvenance.model_fields[field].description


def _provenance(source_url: str | None, license: str | None, note: str | None) -> DatasetProvenance:
    """The upload's provenance, validated as `tldrlab data register` validates its options; 422 naming each
    query parameter otherwise."""
    try:
        return DatasetProvenance(source_url=source_url, license=license, note=note)
    except ValidationError as exc:
        raise InvalidRequestError(validation_problems(exc, prefix=("query",))) from None


@router.post("/datasets", status_code=201, response_model=DatasetInfo)
async def upload_dataset(
    request: Request,
    name: str = Query(
        ..., min_length=1, max_length=200, description="File name (its extension tells the format)."
    ),
    format: str | None = Query(None, max_length=50, description="Reader format; detected when omitted."),
    source_url: str | None = Query(None, description=_described("source_url")),
    license: str | None = Query(None, description=_described("license")),
    note: str | None = Query(None, description=_described("note")),
) -> dict[str, Any]:
    """Upload a data file (the request body, sent as is) for API runs to read as `dataset:<id>`, with its
    provenance (`source_url`, `license`, `note`: the options of `tldrlab data register`, validated by the same
    class, `DatasetProvenance`; recorded as `extra.provenance`)."""
    provenance = _provenance(source_url, license, note)  # refused before any byte is stored
    settings = settings_of(request)
    limit = settings.max_upload_bytes
    incoming = datasets_dir(settings) / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    partial = incoming / uuid.uuid4().hex
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"data set over {limit} bytes (TLDRLAB_MAX_UPLOAD_BYTES)")
                digest.update(chunk)
                handle.write(chunk)
        if size == 0:
            raise InvalidInputError("the request body is empty: send the file's bytes")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    # The format is detected from the name's extension too: the file takes its final name first.
    file_name = safe_file_name(name)
    dataset_id = new_dataset_id()
    target = datasets_dir(settings) / dataset_id / file_name
    target.parent.mkdir(parents=True)
    partial.replace(target)
    try:
        found, records = await run_in_threadpool(_describe, target, file_name, format, settings)
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise
    record = DatasetRecord(
        id=dataset_id,
        name=file_name,
        path=str(target.relative_to(settings.home)),
        sha256=digest.hexdigest(),
        size_bytes=size,
        source="upload",
        created_at=time.time(),
        format=found,
        records=records,
        # what was given only, as `tldrlab data register` of the same bytes later fills in what is missing
        extra={"provenance": given} if (given := provenance.model_dump(exclude_none=True)) else {},
    )
    try:
        open_datasets(settings).insert(record)
    except BaseException:  # a database that refused the row (a full disk): no file of a data set it lacks
        shutil.rmtree(target.parent, ignore_errors=True)
        raise
    return record.public()


@router.get("/datasets", response_model=DatasetList)
def list_datasets(
    request: Request, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10**9)
) -> dict[str, Any]:
    records = open_datasets(settings_of(request)).list(limit=limit, offset=offset)
    return {"datasets": [r.public() for r in records], "count": len(records)}


@router.get("/datasets/{dataset_id}", response_model=DatasetInfo)
def get_dataset(request: Request, dataset_id: str) -> dict[str, Any]:
    return open_datasets(settings_of(request)).get(dataset_id).public()
