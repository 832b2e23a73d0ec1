"""Runs API: start a run of any kind (`POST /runs`; `GET /kinds` lists them with their config schemas), start
training and evaluate / generate / score runs of a trained model, list, inspect, tail logs, stream events
(SSE), cancel.

Every endpoint that starts work goes through `state.submit_run` (`tldrlab.launch.submit_run`): the config is
validated against its kind's class (422 naming the field), prepared as the CLI prepares it, and only a queued
run is created and enqueued; workers do the work.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tldrlab.errors import (
    AmbiguousRunIdError,
    ConflictError,
    InvalidConfigError,
    InvalidRequestError,
    NotFoundError,
)
from tldrlab.evaluate.artifacts import FINAL_EVAL_TAG
from tldrlab.freeform import RunConfigMap
from tldrlab.kinds import (
    KINDS,
    get_kind,
    kind_schema,
    recorded_kind_names,
    result_report,
    submittable_kinds,
)
from tldrlab.models.resolve import run_kind_refusal
from tldrlab.runs import RunRecord, RunStatus
from tldrlab.runs.paths import Seed
from tldrlab.runs.reconcile import cancel_with_descendants
from tldrlab.runs.registry import RunQuery
from tldrlab.runs.run import read_manifest
from tldrlab.service.confine import public_paths
from tldrlab.service.events import RunEvent, RunTail, sse_format
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.routes.health import register_check
from tldrlab.service.state import (
    queue_readiness,
    registry,
    server_stopping,
    settings_of,
    settle_orphans_here,
    submit_run,
)

router = APIRouter(tags=["runs"], route_class=StrictJSONRoute)
MAX_MESSAGE_CHARS = 2000
register_check("queue", queue_readiness)


# -- models --------------------------------------------------------------------------------------------------
def _not_a_boolean(value: Any) -> Any:
    """A boolean given for a number is refused (as in run configs, `tldrlab.numbers`): pydantic's lax mode
    took `"seed": true` for seed 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


RequestSeed = Annotated[Seed | None, BeforeValidator(_not_a_boolean)]
"""A request body's `seed`: the bounds of a config's seed (0 to 2**32 - 1), no boolean. A plain int took
`true`, -1 and 2**70 and recorded them in the manifest of a kind whose config has no seed of its own."""


class RunRequest(BaseModel):
    """Start a run of any submittable kind (`GET /kinds` lists them with their config schemas)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: str = Field(
        default="train", description="Run kind: " + ", ".join(k.name for k in submittable_kinds()) + "."
    )
    config: RunConfigMap = Field(
        default_factory=dict, description="The run's config, validated against the kind's config class."
    )
    seed: RequestSeed = Field(
        default=None,
        description="Seed recorded in the manifest; the config's seed (`seed`, `train.seed`) seeds the run, "
        "so where the config has one this may only repeat it.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Free-form labels.")


class TrainRequest(BaseModel):
    """Start a training run (config as in `tldrlab train --config`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    config: RunConfigMap = Field(..., description="Training config: model, tokenizer, data, train settings.")
    seed: RequestSeed = None
    tags: dict[str, str] = Field(default_factory=dict)


class ChildRequest(BaseModel):
    """Evaluate / generate / score with the model a training run produced."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    config: RunConfigMap = Field(default_factory=dict, description="Options of the evaluation / generation.")


class KindInfo(BaseModel):
    """One run kind: its name, what it does and the JSON schema of its config."""

    name: str
    help: str
    submittable: bool
    resumable: bool
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON schema of the kind's config.")
    template: dict[str, Any] = Field(description="A starting config: defaults, required fields null.")


class KindList(BaseModel):
    kinds: list[KindInfo]


class Artifact(BaseModel):
    path: str
    kind: str = "file"
    size: int | None = None
    sha256: str | None = None


class RunInfo(BaseModel):
    """A run's state as the registry has it."""

    id: str
    kind: str
    status: str
    message: str | None
    progress: float | None
    metrics: dict[str, Any]
    created_at: float
    started_at: float | None
    ended_at: float | None
    heartbeat_at: float | None
    heartbeat_age_s: float | None = Field(default=None, description="Seconds since the last heartbeat.")
    error_code: str | None
    attempts: int
    worker: str | None
    cancel_requested: bool
    parent_id: str | None
    tags: dict[str, Any]
    archive_sha256: str | None = Field(
        default=None, description="The run's archive in the file store, if any."
    )
    archived_at: float | None = None
    cleaned_at: float | None = Field(
        default=None, description="When retention removed its directory (naming the run restores it)."
    )


class RunDetail(RunInfo):
    config: dict[str, Any]
    artifacts: list[Artifact] = Field(default_factory=list)
    last_metrics: dict[str, Any] | None = Field(default=None, description="The newest metrics.jsonl line.")


class RunList(BaseModel):
    runs: list[RunInfo]
    count: int


class LogTail(BaseModel):
    run_id: str
    lines: list[dict[str, Any]]


class ChildResult(BaseModel):
    """State and (once completed) result of an evaluate / generate / score request."""

    request_id: str
    run_id: str
    status: str
    message: str | None
    metrics: dict[str, Any]
    result: Any | None = Field(default=None, description="The job's result.json once it completed.")


class RunReport(BaseModel):
    """A completed run's result as people read it: the report `tldrlab` prints for the run's kind."""

    run_id: str
    kind: str
    markdown: str = Field(description="Lines and tables in Markdown (server paths rewritten as elsewhere).")
    warnings: list[str] = Field(description="What the reader should not miss (also ending `markdown`).")


# -- helpers -------------------------------------------------------------------------------------------------
def run_info(record: RunRecord) -> dict[str, Any]:
    data = record.to_dict()
    data.pop("config", None)
    data.pop("run_dir", None)  # never expose server paths
    if data.get("message") and len(data["message"]) > MAX_MESSAGE_CHARS:
        data["message"] = data["message"][:MAX_MESSAGE_CHARS] + "…"
    data["heartbeat_age_s"] = round(time.time() - record.heartbeat_at, 3) if record.heartbeat_at else None
    return data


def _tail_lines(path: Path, limit: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 256 * 1024))
        chunk = handle.read().decode("utf-8", errors="replace").splitlines()
    rows = []
    for line in chunk[-limit:]:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            value.pop("exception", None)  # tracebacks stay on the server
            rows.append(value)
    return rows


def _last_line(path: Path) -> dict[str, Any] | None:
    rows = _tail_lines(path, 1)
    return rows[-1] if rows else None


def public(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """What a client may see of `data`: server paths rewritten (`tldrlab.service.confine.public_paths`)."""
    result: dict[str, Any] = public_paths(data, settings_of(request))
    return result


def _get(request: Request, run_id: str) -> RunRecord:
    return registry(request).get(run_id)


def _result(record: RunRecord) -> Any | None:
    path = Path(record.run_dir) / "artifacts" / "result.json"
    if record.status != RunStatus.COMPLETED or not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


# -- routes --------------------------------------------------------------------------------------------------
@router.get("/kinds", response_model=KindList, response_model_by_alias=True)
def list_kinds(submittable: bool = True) -> dict[str, Any]:
    """Every run kind (only the submittable ones unless `submittable=false`) with its config's JSON schema."""
    kinds = submittable_kinds() if submittable else list(KINDS.values())
    return {"kinds": [kind_schema(kind) for kind in kinds]}


@router.get("/kinds/{name}", response_model=KindInfo, response_model_by_alias=True)
def get_kind_info(name: str) -> dict[str, Any]:
    return kind_schema(get_kind(name))


@router.post("/runs", status_code=202, response_model=RunInfo)
def start_run(request: Request, body: RunRequest) -> dict[str, Any]:
    """Start a run of any submittable kind: 422 naming the field when the config does not fit the kind."""
    record = submit_run(request, body.kind, body.config, seed=body.seed, tags=dict(body.tags))
    return public(request, run_info(record))


@router.post("/runs/train", status_code=202, response_model=RunInfo)
def start_training(request: Request, body: TrainRequest) -> dict[str, Any]:
    record = submit_run(request, "train", body.config, seed=body.seed, tags=dict(body.tags))
    return public(request, run_info(record))


@router.get("/runs", response_model=RunList)
def list_runs(request: Request, query: Annotated[RunQuery, Query()]) -> dict[str, Any]:
    # a kind's runs under every name they may be recorded under (evaluate and eval, whichever is given);
    # a typo is a 422 listing the kinds, not an empty list
    kinds = recorded_kind_names(query.kind) if query.kind else None
    settle_orphans_here(request)  # a killed command-line run of this machine is not running for good
    runs = registry(request)
    # the parent by id or unique prefix, as run references resolve elsewhere; an unknown one is a 404
    parent = runs.find(query.parent_id).id if query.parent_id else None
    filters = {**query.model_dump(mode="json"), "kind": kinds, "parent_id": parent}
    records = runs.list(**filters, with_config=False)
    return public(request, {"runs": [run_info(r) for r in records], "count": len(records)})


@router.get("/runs/{run_id}", response_model=RunDetail)
def get_run(request: Request, run_id: str) -> dict[str, Any]:
    settle_orphans_here(request)
    record = _get(request, run_id)
    data = run_info(record)
    data["config"] = record.config
    try:
        data["artifacts"] = read_manifest(record.run_dir).get("artifacts", [])
    except (OSError, ValueError):
        data["artifacts"] = []
    data["last_metrics"] = _last_line(Path(record.run_dir) / "metrics.jsonl")
    return public(request, data)


@router.get("/runs/{run_id}/report", response_model=RunReport)
def get_report(request: Request, run_id: str) -> dict[str, Any]:
    """The run's result as it reads in the CLI, the runs page and Discord; 409 until the run completed."""
    record = _get(request, run_id)
    if record.status in (RunStatus.FAILED, RunStatus.CANCELLED):  # never to complete: promise no report
        way = "failed" if record.status == RunStatus.FAILED else "was cancelled"
        raise ConflictError(f"run {record.id} {way}: only a completed run has a report")
    if record.status != RunStatus.COMPLETED:
        raise ConflictError(f"run {record.id} is {record.status.value}: it has a report once it completes")
    result = _result(record)
    if result is None:
        raise NotFoundError(f"run {record.id} recorded no result to report")
    report = result_report(record.kind, record.id, result)
    markdown, warnings = report.markdown(), report.warnings
    return public(
        request, {"run_id": record.id, "kind": record.kind, "markdown": markdown, "warnings": warnings}
    )


@router.get("/runs/{run_id}/logs", response_model=LogTail)
def get_logs(request: Request, run_id: str, tail: int = Query(100, ge=1, le=5000)) -> dict[str, Any]:
    record = _get(request, run_id)
    lines = _tail_lines(Path(record.run_dir) / "log.jsonl", tail)
    return public(request, {"run_id": record.id, "lines": lines})


@router.get("/runs/{run_id}/metrics")
def get_metrics(request: Request, run_id: str, tail: int = Query(2000, ge=1, le=100_000)) -> dict[str, Any]:
    record = _get(request, run_id)
    rows = _tail_lines(Path(record.run_dir) / "metrics.jsonl", tail)
    return public(request, {"run_id": record.id, "metrics": rows})


async def _event_stream(
    request: Request, tail: RunTail, first: list[tuple[RunEvent, str]], poll_s: float
) -> Any:
    settings = settings_of(request)
    events = first
    last_sent = time.monotonic()
    while True:
        for event, cursor in events:
            if event.message:
                event.message = public_paths(event.message, settings)
            yield sse_format(event, cursor)
            last_sent = time.monotonic()
        # a run deleted between two polls (cancelled and deleted at once) ends its stream too: it was read as
        # "nothing new" for good, keep-alives forever; a reconnecting client then gets the run's 404
        if tail.finished or tail.gone or server_stopping(request):
            return
        if await request.is_disconnected():
            return
        if time.monotonic() - last_sent > settings.sse_keepalive_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(poll_s)
        # the stream of a run whose command-line process was killed ends once it is settled
        await run_in_threadpool(settle_orphans_here, request)
        events = await run_in_threadpool(tail.poll_with_cursors)


@router.get("/runs/{run_id}/events", response_model=None)
async def stream_events(
    request: Request,
    run_id: str,
    logs: bool = False,
    poll_s: float = Query(0.5, ge=0.05, le=10, allow_inf_nan=False),
) -> StreamingResponse | Response:
    """Server-sent events of a run (history first, then live) until it finishes. A client that reconnects
    with `Last-Event-ID` (EventSource does) gets the events after that one only; when the run has finished
    and nothing came after it, 204 No Content, which tells an EventSource to stop reconnecting."""
    await run_in_threadpool(_get, request, run_id)  # 404 before the stream starts
    # the id of each event is where the run's tail stands after it (RunTail.cursor): resume from there
    last_event_id = request.headers.get("last-event-id")
    tail = await run_in_threadpool(
        RunTail, registry(request), run_id, include_logs=logs, cursor=last_event_id
    )
    first = await run_in_threadpool(tail.poll_with_cursors)
    if last_event_id and not first and tail.finished:
        return Response(status_code=204)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _event_stream(request, tail, first, poll_s), media_type="text/event-stream", headers=headers
    )


@router.get("/runs/{run_id}/logs/stream", response_model=None)
async def stream_logs(
    request: Request, run_id: str, poll_s: float = Query(0.5, ge=0.05, le=10, allow_inf_nan=False)
) -> StreamingResponse | Response:
    """Server-sent events: log lines plus lifecycle and metrics events."""
    return await stream_events(request, run_id, logs=True, poll_s=poll_s)


@router.post("/runs/{run_id}/cancel", response_model=RunInfo)
def cancel_run(request: Request, run_id: str) -> dict[str, Any]:
    runs = registry(request)
    record = runs.get(run_id)
    if record.status.finished:
        raise ConflictError(f"run {run_id} already {record.status.value}")
    cancel_with_descendants(runs, record)
    return public(request, run_info(runs.get(run_id)))


def _start_child(request: Request, run_id: str, kind: str, body: ChildRequest) -> RunRecord:
    parent = _get(request, run_id)
    given = body.config.get("model_run")
    if given is not None and given not in (run_id, parent.id):
        # the path names the model; another one in the body was replaced without a word, so a client that
        # meant that other run got an answer about this one
        raise InvalidConfigError.at(
            "model_run",
            f"{given!r}, but this route takes the model of run {parent.id} (the path's): leave model_run "
            f"out, or POST /runs/{{that run}}/{kind}",
        )
    if (refusal := run_kind_refusal(parent.id, settings_of(request))) is not None:
        # the path's run is the config's model_run (set below): a run of a kind that saves no model is refused
        # as `POST /runs` refuses it there, a 422 at `model_run` by the same rule (the same kinds taken). It
        # was a 409, as if the run were in the wrong state; its kind never changes, so no retry would do
        raise InvalidConfigError.at("model_run", refusal)
    if parent.status != RunStatus.COMPLETED:
        # a state that changes: the same request succeeds once the training completed
        raise ConflictError(f"run {run_id} is {parent.status.value}; {kind} needs a completed training run")
    config = {**body.config, "model_run": parent.id}
    return submit_run(request, kind, config, parent_id=parent.id)


def _child(request: Request, run_id: str, kind: str, request_id: str) -> dict[str, Any]:
    """A request of `kind` of the run by its id or a unique prefix among the run's requests of that kind
    (as run ids are taken elsewhere; several matching is an `ambiguous_run_id` 404, never a guess)."""
    if not request_id.strip():  # the registry's refusal would call it a run id
        raise InvalidRequestError(f"the {kind} request id is empty: give one or a unique prefix of one")
    try:
        record = registry(request).find(request_id, parent_id=run_id, kind=recorded_kind_names(kind))
    except AmbiguousRunIdError as exc:
        message = f"{exc.message} among the {kind} requests of run {run_id}"
        raise AmbiguousRunIdError(message, run_id=request_id) from exc
    except NotFoundError as exc:
        raise NotFoundError(f"no {kind} request {request_id!r} for run {run_id!r}") from exc
    child = {
        "request_id": record.id,
        "run_id": run_id,
        "status": record.status.value,
        "message": record.message,
        "metrics": record.metrics,
        "result": _result(record),
    }
    return public(request, child)


@router.post("/runs/{run_id}/evaluate", status_code=202, response_model=ChildResult)
def evaluate(request: Request, run_id: str, body: ChildRequest) -> dict[str, Any]:
    record = _start_child(request, run_id, "evaluate", body)
    return _child(request, run_id, "evaluate", record.id)


FINAL_EVALUATION = "final"
LATEST_EVALUATION = "latest"


def _evaluations_of(request: Request, run_id: str) -> list[RunRecord]:
    """The evaluate runs whose parent is `run_id`, newest first (old ones were recorded as kind `eval`).
    Filtered by parent in the query: the 1000 newest evaluations of the whole registry, filtered here, lost
    an old run's evaluations once 1000 newer ones existed (it read as "no evaluation yet")."""
    kinds = recorded_kind_names("evaluate")
    return registry(request).list(kind=kinds, parent_id=run_id, limit=None, with_config=False)


def final_evaluation(request: Request, parent: RunRecord, children: list[RunRecord]) -> RunRecord | None:
    """The evaluation `parent`'s training ended with (the one `tldrlab runs compare` reads as its `eval.*`):
    the run its manifest names (`final_eval_run`, set once that evaluation ended), else the newest child the
    training tagged `final_eval` (still running, or the run directory was cleaned), a completed one first.
    None when the training ended without one (`final_eval.enabled` false, or it failed before it started)."""
    try:
        named = read_manifest(parent.run_dir).get("final_eval_run")
    except (OSError, ValueError):  # a run directory retention cleaned: its registry row is all there is
        named = None
    if isinstance(named, str) and named:
        try:
            record = _get(request, named)
        except NotFoundError:  # deleted since; the tag may still find a re-run
            record = None
        if record is not None and record.parent_id == parent.id:
            return record
    tagged = [c for c in children if c.tags.get(FINAL_EVAL_TAG)]
    done = [c for c in tagged if c.status == RunStatus.COMPLETED]
    return next(iter(done or tagged), None)


def _deleted_final_evaluation(request: Request, parent: RunRecord) -> str | None:
    """The final evaluation `parent`'s manifest names when that run is not recorded (deleted, or `parent` was
    imported from an archive, which holds no other run), else None."""
    try:
        named = read_manifest(parent.run_dir).get("final_eval_run")
    except (OSError, ValueError):
        return None
    if not isinstance(named, str) or not named:
        return None
    try:
        _get(request, named)
    except NotFoundError:
        return named
    return None


@router.get("/runs/{run_id}/eval", response_model=ChildResult)
def get_eval(
    request: Request,
    run_id: str,
    evaluation: str = Query(
        FINAL_EVALUATION,
        min_length=1,
        max_length=200,
        description="Which evaluation of the run: `final` (the one its training ended with, what `tldrlab "
        "runs compare` reads), `latest` (the newest completed one, else the newest), or an evaluation's "
        "request id (`POST /runs/{id}/evaluate` answers it) or a prefix of it unique among the run's "
        "evaluations.",
    ),
) -> dict[str, Any]:
    """One evaluation of a training run: by default its final evaluation, whichever evaluations ran later
    (the newest one was answered, so a later `tldrlab eval RUN` on a few samples replaced the run's final
    figures here while `runs compare` still showed the final ones)."""
    parent = _get(request, run_id)
    if evaluation not in (FINAL_EVALUATION, LATEST_EVALUATION):
        return _child(request, run_id, "evaluate", evaluation)
    children = _evaluations_of(request, run_id)
    deleted = (
        _deleted_final_evaluation(request, parent)
        if evaluation == FINAL_EVALUATION and final_evaluation(request, parent, children) is None
        else None
    )
    if deleted:  # not "no evaluation yet": the run was evaluated; its figures stay beside its model
        raise NotFoundError(
            f"run {run_id}'s final evaluation {deleted} is not recorded here (deleted, or the run was "
            f"imported without it; its figures stay in the run directory's eval_summary.json, what tldrlab "
            f"runs compare reads); "
            + ("?evaluation=latest for its newest one, or " if children else "")
            + f"POST /runs/{run_id}/evaluate for a new one"
        )
    if not children:
        raise NotFoundError(f"run {run_id} has no evaluation yet: POST /runs/{run_id}/evaluate")
    if evaluation == LATEST_EVALUATION:
        done = [r for r in children if r.status == RunStatus.COMPLETED]
        return _child(request, run_id, "evaluate", (done or children)[0].id)
    final = final_evaluation(request, parent, children)
    if final is None:
        others = ", ".join(r.id for r in children[:5]) + (", ..." if len(children) > 5 else "")
        raise NotFoundError(
            f"run {run_id} has no final evaluation (its training ended without one); its evaluations: "
            f"{others}: ?evaluation=latest for the newest, or ?evaluation=<id>"
        )
    return _child(request, run_id, "evaluate", final.id)


@router.post("/runs/{run_id}/generate", status_code=202, response_model=ChildResult)
def generate(request: Request, run_id: str, body: ChildRequest) -> dict[str, Any]:
    return _child(request, run_id, "generate", _start_child(request, run_id, "generate", body).id)


@router.get("/runs/{run_id}/generate/{request_id}", response_model=ChildResult)
def get_generation(request: Request, run_id: str, request_id: str) -> dict[str, Any]:
    return _child(request, run_id, "generate", request_id)


@router.post("/runs/{run_id}/score", status_code=202, response_model=ChildResult)
def score(request: Request, run_id: str, body: ChildRequest) -> dict[str, Any]:
    return _child(request, run_id, "score", _start_child(request, run_id, "score", body).id)


@router.get("/runs/{run_id}/score/{request_id}", response_model=ChildResult)
def get_score(request: Request, run_id: str, request_id: str) -> dict[str, Any]:
    return _child(request, run_id, "score", request_id)
