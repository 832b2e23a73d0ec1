"""`GET /compare?ids=A&ids=B&baseline=A`: runs' metrics side by side with regressions against a baseline
(`tldrlab.runs.compare`), and `GET /compare/plot` the same as a PNG chart; what `tldrlab runs compare` prints
and the runs page shows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tldrlab.errors import InvalidInputError, InvalidRequestError
from tldrlab.runs.compare import CompareQuery, Comparison, compare_runs
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.state import registry, settings_of
from tldrlab.track.plots import plot_comparison

router = APIRouter(tags=["runs"], route_class=StrictJSONRoute)


class RegressionInfo(BaseModel):
    run_id: str
    metric: str
    baseline: float
    value: float
    change: float = Field(
        description="(value - baseline) / |baseline| (the difference when the baseline is 0)."
    )


class UncheckedInfo(BaseModel):
    run_id: str
    status: str
    metrics: list[str] = Field(
        description="The baseline's metrics this run lacks; empty for a baseline with none that says better "
        "or worse."
    )


class ComparisonInfo(BaseModel):
    runs: list[dict[str, Any]] = Field(
        description="Per run: id, kind, status, tags, metrics, evaluation (the run whose eval.* it shows)."
    )
    metrics: list[str]
    baseline: str | None
    tolerance: float
    directions: dict[str, str | None] = Field(
        description="Per metric: `lower` or `higher` is better, or null."
    )
    regressions: list[RegressionInfo]
    unchecked: list[UncheckedInfo] = Field(
        description="Runs the baseline's metrics could not be checked on (a failed, cancelled or running run "
        "has none): no regression listed does not clear them."
    )
    ungated: list[str] = Field(
        description="Times and throughputs shown but not gated: they move with the machine's load, so they "
        "are gated only when named with `metric`."
    )


def _compare(request: Request, query: CompareQuery) -> Comparison:
    """The comparison; a query whose values the runs refuse (a metric none has, a run named twice, a baseline
    not compared) is a 422 like the query's schema refusals, not a 400."""
    try:
        return compare_runs(
            query.ids,
            baseline=query.baseline,
            metrics=query.metric or None,
            tolerance=query.tolerance,
            settings=settings_of(request),
            registry=registry(request),
        )
    except InvalidInputError as exc:
        if exc.http_status != InvalidInputError.http_status:
            raise  # a more particular answer of its own (e.g. a 422 already)
        raise InvalidRequestError(exc.message) from None


@router.get("/compare", response_model=ComparisonInfo)
async def compare(request: Request, query: Annotated[CompareQuery, Query()]) -> dict[str, Any]:
    """The runs' metrics side by side and each regression against the baseline (default: the first run)."""
    comparison = await run_in_threadpool(_compare, request, query)
    return comparison.as_dict()


def _png(comparison: Comparison) -> bytes:

    with tempfile.TemporaryDirectory() as folder:
        path = plot_comparison(comparison, Path(folder) / "compare.png")
        return path.read_bytes()


@router.get("/compare/plot", response_class=Response)
async def compare_plot(request: Request, query: Annotated[CompareQuery, Query()]) -> Response:
    """The comparison as a PNG chart: one panel per metric, the baseline dark, regressions red."""
    comparison = await run_in_threadpool(_compare, request, query)
    return Response(await run_in_threadpool(_png, comparison), media_type="image/png")
