"""Retention over HTTP: `DELETE /runs/{id}`, `POST /cleanup/prune` (a pass by the server's policy, a dry run
unless asked otherwise) and `GET /cleanup/events` (what cleanup did, would do or failed to do; the runs page
shows them as lines). See `tldrlab.runs.retention` for the policy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tldrlab.errors import InvalidRequestError
from tldrlab.kinds import kind_names_by_recorded_name
from tldrlab.runs.cleanup_events import recent_events
from tldrlab.runs.retention import delete_run, prune
from tldrlab.service.confine import public_paths
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.state import registry, settings_of

router = APIRouter(tags=["cleanup"], route_class=StrictJSONRoute)


class CleanupEventInfo(BaseModel):
    """One cleanup action: `cleanup_dry_run`, `cleanup_completed` or `cleanup_failed`."""

    id: str
    type: str
    at: float
    target: str = Field(description="A run id, or `cache`.")
    run_id: str | None
    kind: str | None
    action: str = Field(description="`delete`, `clean` (archive kept), `checkpoints` or `cache`.")
    bytes_freed: int
    files_deleted: int
    reason: str | None
    error: str | None


class CleanupEventList(BaseModel):
    events: list[CleanupEventInfo]


class DecisionInfo(BaseModel):
    target: str
    action: str
    reason: str
    kind: str | None
    status: str = Field(
        description="`done`, `dry_run`, `failed` or `pending` (waiting for its grace period)."
    )
    bytes: int
    files: int
    due_at: float | None
    error: str | None
    children: list[str] = Field(
        default_factory=list,
        description="The run's evaluations (generations, scores) deleted with it; `bytes` and `files` of "
        "`DELETE /runs/{id}` count theirs too.",
    )


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dry_run: bool = Field(default=True, description="Only report (the default); false deletes.")


class PruneResult(BaseModel):
    dry_run: bool
    bytes_freed: int
    files_deleted: int
    actions: list[DecisionInfo]
    pending: list[DecisionInfo]
    kept: dict[str, str] = Field(description="Run id -> why it is kept.")


class DeleteQuery(BaseModel):
    """The query of `DELETE /runs/{id}`: any other name is refused (422), not ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dry_run: bool = Field(default=False, description="Only report what would be deleted.")


def _check_delete_request(request: Request) -> None:
    """What `DELETE /runs/{id}` would otherwise ignore, refused before anything is deleted: `dry_run` given
    twice (the last one counted, so `?dry_run=true&dry_run=false` deleted) and a request body (the route
    reads none: `{"dry_run": true}`, as `POST /cleanup/prune` takes it, deleted for real)."""
    if len(request.query_params.getlist("dry_run")) > 1:
        raise InvalidRequestError("query.dry_run: given more than once; give it once (true or false)")
    headers = request.headers
    if headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers:
        raise InvalidRequestError(
            "DELETE /runs/{id} reads no request body: give dry_run as a query parameter (?dry_run=true)"
        )


@router.delete("/runs/{run_id}", response_model=DecisionInfo)
def delete(request: Request, run_id: str, query: Annotated[DeleteQuery, Query()]) -> dict[str, Any]:
    """Delete a finished run (directory and registry row) now with its evaluations (generations, scores:
    `children`); 409 while it or one of its evaluations is queued or running, or while an alias or another
    run references it or one of its evaluations. A query name other than `dry_run` is a 422: a misspelt
    `dry_run` deleted for real."""
    _check_delete_request(request)
    dry_run = query.dry_run
    settings = settings_of(request)
    runs = registry(request)
    # the exact id, as every other /runs/{id} route: the CLI's unique-prefix lookup let DELETE /runs/<a typo
    # or a cut-off id> delete whichever single run it happened to prefix
    record = runs.get(run_id)
    decision = delete_run(
        record.id,
        kind_names=kind_names_by_recorded_name(),
        dry_run=dry_run,
        settings=settings,
        registry=runs,
    )
    result: dict[str, Any] = public_paths(decision.as_dict(), settings)
    return result


@router.post("/cleanup/prune", response_model=PruneResult)
async def prune_now(request: Request, body: PruneRequest) -> dict[str, Any]:
    """One retention pass by the server's policy (the `retention` settings)."""
    settings = settings_of(request)
    report = await run_in_threadpool(
        prune,
        kind_names=kind_names_by_recorded_name(),
        dry_run=body.dry_run,
        settings=settings,
        registry=registry(request),
    )
    result: dict[str, Any] = public_paths(report.as_dict(), settings)
    return result


@router.get("/cleanup/events", response_model=CleanupEventList)
def cleanup_events(request: Request, limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    """The newest cleanup events first."""
    settings = settings_of(request)
    events = [public_paths(e.as_dict(), settings) for e in recent_events(limit, settings)]
    return {"events": events}
