"""`GET /compare?ids=A&ids=B&baseline=A`: runs' metrics side by side with regressions against a baseline
(`tldrlab.runs.compare`), and `GET /compare/plot` the same as a PNG chart; what `tldrlab runs compare` prints
and the runs page shows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tldrlab.runs.compare import MAX_RUNS, Comparison, compare_runs
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


class ComparisonInfo(BaseModel):
    runs: list[dict[str, Any]] = Field(description="Per run: id, kind, status, tags, metrics.")
    metrics: list[str]
    baseline: str | None
    tolerance: float
    directions: dict[str, str | None] = Field(
        description="Per metric: `lower` or `higher` is better, or null."
    )
    regressions: list[RegressionInfo]


def _compare(
    request: Request, ids: list[str], baseline: str | None, metric: list[str], tolerance: float
) -> Comparison:
    return compare_runs(
        ids,
        baseline=baseline,
        metrics=metric or None,
        tolerance=tolerance,
        settings=settings_of(request),
        registry=registry(request),
    )


IDS = Query(..., min_length=1, max_length=MAX_RUNS, description="The runs (ids or unique prefixes).")
METRICS = Query(default_factory=list, max_length=50, description="Only these metrics.")
TOLERANCE = Query(0.01, ge=0.0, le=1000.0, description="A change worse than this fraction is a regression.")


@router.get("/compare", response_model=ComparisonInfo)
async def compare(
    request: Request,
    ids: list[str] = IDS,
    baseline: str | None = Query(None, max_length=200),
    metric: list[str] = METRICS,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """The runs' metrics side by side and each regression against the baseline (default: the first run)."""
    comparison = await run_in_threadpool(_compare, request, ids, baseline, metric, tolerance)
    return comparison.as_dict()


def _png(comparison: Comparison) -> bytes:

    with tempfile.TemporaryDirectory() as folder:
        path = plot_comparison(comparison, Path(folder) / "compare.png")
        return path.read_bytes()


@router.get("/compare/plot", response_class=Response)
async def compare_plot(
    request: Request,
    ids: list[str] = IDS,
    baseline: str | None = Query(None, max_length=200),
    metric: list[str] = METRICS,
    tolerance: float = TOLERANCE,
) -> Response:
    """The comparison as a PNG chart: one panel per metric, the baseline dark, regressions red."""
    comparison = await run_in_threadpool(_compare, request, ids, baseline, metric, tolerance)
    return Response(await run_in_threadpool(_png, comparison), media_type="image/png")
