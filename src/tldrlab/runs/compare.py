"""Runs side by side: their metrics in one table, and regressions against a chosen baseline run.

    comparison = compare_runs(["train-a", "train-b", "train-c"], baseline="train-a", tolerance=0.01)
    comparison.regressions          # [Regression(run_id, metric, baseline, value, change)]
    plot_comparison(comparison, Path("compare.png"))       # tldrlab.track.plots: one panel per metric

A run's metrics are its summary (the registry's `metrics`: best validation loss, ROUGE of an evaluation run,
...) and, when its directory holds an evaluation (`eval_summary.json`: a training run's final evaluation,
written next to its model), that evaluation's metrics as `eval.<name>`; the output names that evaluation run.
Which way is better is known by name (`tldrlab.metric_direction`, the table that also picks a training run's
best checkpoint): losses, perplexities, MSE, unknown-token rates, times (`*_seconds`, `train_s`) and empty
outputs are better lower; ROUGE, BERTScore, accuracy, F1, AUC, cosine, top-k, precision@k, coverage,
distinct-n and throughput higher; any other metric (lengths, counts) is shown but never called a regression.
A run regresses on a metric when it is worse than the baseline by more than `tolerance` (relative to the
baseline's value). Times and throughputs are gated only when named with `metrics`: they move with the
machine's load between two runs of one config, so by default a slower run is shown, not failed.
`tldrlab runs compare`, `GET /compare` and the runs page show the same comparison.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from tldrlab.config import Settings, get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.metric_direction import Direction, direction, is_speed
from tldrlab.report import Column, Report, Table
from tldrlab.runs.registry import RunRecord, RunRegistry, open_registry

EVAL_SUMMARY = "eval_summary.json"
MAX_RUNS = 20


class CompareQuery(ConfigModel):
    """Which runs to compare and how: `GET /compare` and `/compare/plot` (query parameters) and
    `tldrlab runs compare`."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=MAX_RUNS)
    """The runs (ids or unique prefixes)."""
    baseline: str | None = Field(None, max_length=200)
    """The run the others are measured against (default: the first)."""
    metric: list[str] = Field(default_factory=list, max_length=50)
    """Only these metrics (default: every metric at least two runs share). A time or throughput is gated
    only when named here."""
    tolerance: float = Field(0.01, ge=0.0, le=1000.0)
    """A change worse than this fraction of the baseline is a regression."""


class CompareChart(CompareQuery):
    """`tldrlab runs compare`: the query, where its chart goes, and whether a regression fails the command."""

    plot: str = "runs-compare.png"
    """Where the PNG chart goes."""
    fail_on_regression: bool = False
    """Exit with code 1 when a run regresses, or could not be checked: it has none of the baseline's metrics
    (failed, cancelled, still running), or lacks one named with `metric` (for CI)."""


@dataclass(frozen=True)
class Regression:
    """A run worse than the baseline on one metric."""

    run_id: str
    metric: str
    baseline: float
    value: float
    change: float
    """(value - baseline) / |baseline| (value - baseline when the baseline is 0); the sign says up or down,
    whether that is worse depends on the metric."""


@dataclass(frozen=True)
class Unchecked:
    """A run the baseline's metrics could not be checked on: it has none of them (it failed, was cancelled,
    is still running, or is another kind), or lacks one asked for by name. The baseline itself when it has
    no metric that says better or worse (`metrics` then empty)."""

    run_id: str
    status: str
    metrics: list[str]


@dataclass
class Comparison:
    """Runs, their metrics and how each differs from the baseline."""

    runs: list[dict[str, Any]]
    """Per run (in the order asked): id, kind, status, tags, metrics, and `evaluation`: the evaluation run
    whose metrics are its `eval.*` (its final evaluation), or None."""
    metrics: list[str]
    baseline: str | None
    tolerance: float
    directions: dict[str, Direction | None] = field(default_factory=dict)
    regressions: list[Regression] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    ungated: list[str] = field(default_factory=list)
    """Times and throughputs shown with their direction but not gated: they were not asked for by name."""

    def value(self, run_id: str, metric: str) -> float | None:
        run = next(r for r in self.runs if r["id"] == run_id)
        value = run["metrics"].get(metric)
        return float(value) if isinstance(value, int | float) else None

    def report(self) -> Report:
        """The runs' metrics side by side (change against the baseline, regressions marked), then each
        regression spelled out, or that there is none."""
        regressed = {(r.run_id, r.metric) for r in self.regressions}
        columns = [Column("run", key=True), Column("kind", optional=True)]
        columns += [Column(name, justify="right") for name in self.metrics]
        rows = []
        for run in self.runs:
            is_baseline = run["id"] == self.baseline
            cells = [run["id"] + (" (baseline)" if is_baseline else ""), run["kind"]]
            for name in self.metrics:
                value, base = self.value(run["id"], name), self.value(self.baseline or "", name)
                cell = "-" if value is None else f"{value:.4g}"
                if value is not None and base and not is_baseline:
                    cell += f" {(value - base) / abs(base):+.1%}"
                cells.append(cell + (" REGRESSION" if (run["id"], name) in regressed else ""))
            rows.append(cells)
        report = Report([Table(columns, rows)])
        read = [
            f"{run['id']}: {run['evaluation']}"
            + (", not recorded here" if run.get("evaluation_recorded") is False else "")
            for run in self.runs
            if run.get("evaluation")
        ]
        if read and any(name.startswith("eval.") for name in self.metrics):
            report.blocks.append(f"eval.* from each run's final evaluation ({'; '.join(read)})")
        for r in self.regressions:
            way = "lower" if self.directions.get(r.metric) == "lower" else "higher"
            # from a baseline of 0 the change is the difference itself, no fraction of anything
            change = f"{r.change:+.1%}" if r.baseline else f"{r.change:+.4g} from 0"
            values = f"{r.value:.4g} vs {r.baseline:.4g}"
            report.blocks.append(f"regression: {r.run_id} {r.metric} {values} ({change}; {way} is better)")
        for u in self.unchecked:
            if u.run_id == self.baseline:
                what = "has no metric that says better or worse"
                report.blocks.append(f"not checked: the baseline {u.run_id} ({u.status}) {what}")
                continue
            shown = ", ".join(u.metrics[:4]) + (f", ... ({len(u.metrics)})" if len(u.metrics) > 4 else "")
            report.blocks.append(f"not checked: {u.run_id} ({u.status}) lacks the baseline's {shown}")
        if self.ungated:
            names = ", ".join(self.ungated)
            report.blocks.append(
                f"not gated: {names} (times and throughputs move with the machine's load; name one with"
                " --metric to gate it)"
            )
        if not self.regressions:
            among = " among the runs checked" if self.unchecked else ""
            report.blocks.append(
                f"no regressions{among} against {self.baseline} (tolerance {self.tolerance:.1%})"
            )
        return report

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "metrics": self.metrics,
            "baseline": self.baseline,
            "tolerance": self.tolerance,
            "directions": self.directions,
            "regressions": [r.__dict__ for r in self.regressions],
            "unchecked": [u.__dict__ for u in self.unchecked],
            "ungated": self.ungated,
        }


def run_evaluation(record: RunRecord) -> dict[str, Any]:
    """The evaluation in a run's directory (`eval_summary.json`): a training run's final evaluation, whose
    files are written next to its model (later evaluations keep theirs under `evaluations/`); {} when none."""
    path = Path(record.run_dir) / EVAL_SUMMARY
    try:
        evaluation = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    if not (
        isinstance(evaluation, dict)
        and isinstance(evaluation.get("run_id"), str | None)
        and isinstance(evaluation.get("metrics"), dict | None)
    ):
        # a file of another shape (hand-edited, another tool's) is no evaluation, as unreadable JSON is not:
        # its metrics as a list were an AttributeError traceback, its run id as a list the database's
        return {}
    # an evaluation run's own summary is its result, already among its summary metrics
    return evaluation if evaluation.get("run_id") != record.id else {}


def run_metrics(record: RunRecord) -> dict[str, float]:
    """A run's numeric summary metrics, plus its directory's evaluation as `eval.<name>`."""
    metrics = {k: float(v) for k, v in record.metrics.items() if _number(v)}
    for name, value in (run_evaluation(record).get("metrics") or {}).items():
        if _number(value):
            metrics[f"eval.{name}"] = float(value)
    return metrics


def _recorded(registry: RunRegistry, run_id: str) -> bool:
    try:
        registry.get(run_id)
    except NotFoundError:
        return False
    return True


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def compare_runs(
    run_ids: list[str],
    *,
    baseline: str | None = None,
    metrics: list[str] | None = None,
    tolerance: float = 0.01,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
) -> Comparison:
    """Compare runs (ids or unique prefixes); `baseline` (default: the first) is what regressions are measured
    against; `metrics` limits the columns (default: every metric at least two runs share)."""
    if not 1 <= len(run_ids) <= MAX_RUNS:
        raise InvalidInputError(f"compare 1 to {MAX_RUNS} runs, not {len(run_ids)}")
    if tolerance < 0 or not math.isfinite(tolerance):
        raise InvalidInputError("tolerance must be a finite number >= 0")
    registry = registry or open_registry(settings or get_settings())
    records = [registry.find(run_id) for run_id in run_ids]
    if len({r.id for r in records}) != len(records):
        raise InvalidInputError("a run is named twice")
    base = registry.find(baseline).id if baseline else records[0].id
    if base not in {r.id for r in records}:
        raise InvalidInputError(f"the baseline {base} is not among the compared runs")
    rows: list[dict[str, Any]] = [
        {
            "id": r.id,
            "kind": r.kind,
            "status": r.status.value,
            "tags": r.tags,
            "metrics": run_metrics(r),
            "evaluation": run_evaluation(r).get("run_id"),
        }
        for r in records
    ]
    for row in rows:
        # the final evaluation's files are the training run's and stay when its run is deleted (or the run
        # was imported without it): say so, so the id named is not taken for one that can still be shown
        row["evaluation_recorded"] = _recorded(registry, row["evaluation"]) if row["evaluation"] else None
    if metrics:
        columns = list(dict.fromkeys(metrics))
        known = sorted({name for row in rows for name in row["metrics"]})
        if missing := [name for name in columns if name not in known]:
            # a misspelt metric compared nothing and said "no regressions": a CI gate that always passes
            asked, have = ", ".join(missing), ", ".join(known) or "none"
            raise InvalidInputError(f"no compared run has the metric(s) {asked}; they have: {have}")
    else:
        counts: dict[str, int] = {}
        for row in rows:
            for name in row["metrics"]:
                counts[name] = counts.get(name, 0) + 1
        shared = [name for name, n in counts.items() if n >= min(2, len(rows))]
        columns = sorted(shared, key=lambda name: (direction(name) is None, name))
    comparison = Comparison(
        runs=rows,
        metrics=columns,
        baseline=base,
        tolerance=tolerance,
        directions={name: direction(name) for name in columns},
    )
    for name in columns:
        way = comparison.directions[name]
        reference = comparison.value(base, name)
        if way is not None and not metrics and is_speed(name):
            comparison.ungated.append(name)
            continue
        if way is None or reference is None:
            continue
        for row in rows:
            value = comparison.value(row["id"], name)
            if row["id"] == base or value is None:
                continue
            change = (value - reference) / abs(reference) if reference else value - reference
            worse = change > tolerance if way == "lower" else change < -tolerance
            if worse:
                comparison.regressions.append(Regression(row["id"], name, reference, value, change))
    _find_unchecked(comparison, rows, base, by_name=bool(metrics))
    return comparison


def _find_unchecked(comparison: Comparison, rows: list[dict[str, Any]], base: str, *, by_name: bool) -> None:
    """The runs nothing could be checked on. A failed or cancelled run has no summary metrics, so it shared
    none with the baseline, no column, no regression: `runs compare BASE NEW --fail-on-regression` passed
    with 'no regressions' for a NEW that had failed."""
    base_metrics = next(row for row in rows if row["id"] == base)["metrics"]
    wanted = comparison.metrics if by_name else list(base_metrics)
    gated = [
        name
        for name in wanted
        if name in base_metrics and direction(name) is not None and (by_name or not is_speed(name))
    ]
    if not gated:
        if len(rows) > 1:
            status = next(row for row in rows if row["id"] == base)["status"]
            comparison.unchecked.append(Unchecked(base, status, []))
        return
    for row in rows:
        lacking = [name for name in gated if name not in row["metrics"]]
        # by default only a run with none of them: a metric one run computed and another did not (BERTScore
        # on or off) is shown, not gated; a metric asked for by name is gated
        if row["id"] != base and lacking and (by_name or len(lacking) == len(gated)):
            comparison.unchecked.append(Unchecked(row["id"], row["status"], lacking))
