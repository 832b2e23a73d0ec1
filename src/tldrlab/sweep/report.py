"""Looking at a study: the trials table, the best trial, and an export (CSV, JSON, PNG plots).

rows = trial_rows(study)                    # number, state, params (W&B values), value, seconds, run_id
best = best_trial_summary(study)            # None until a trial completes
files = export_study(study, out_dir)        # trials.csv, trials.json, best.json, plots/*.png
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tldrlab.errors import NotFoundError
from tldrlab.report import Column, Report, Table
from tldrlab.runs.atomic import atomic_write_json, atomic_write_text
from tldrlab.sweep.mapping import PARAMS_ATTR, parameter_name
from tldrlab.sweep.storage import RUN_ATTR, StudyRef

MIN_TRIALS_FOR_IMPORTANCE = 2
"""Parameter importances need at least this many complete trials (and a parameter that varies)."""


def trial_params(trial: FrozenTrial) -> dict[str, Any]:
    """The W&B parameter values of a trial (Optuna's own params for trials made outside tldrlab)."""
    params = trial.user_attrs.get(PARAMS_ATTR)
    return dict(params) if isinstance(params, dict) else dict(trial.params)


def _seconds(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": trial_params(t),
                "seconds": _seconds(t),
                "iterations": len(t.intermediate_values),
                "run_id": t.user_attrs.get(RUN_ATTR),
                "retry_of": t.system_attrs.get("failed_trial"),
                "started": t.datetime_start.isoformat() if t.datetime_start else None,
            }
        )
    return rows


def best_trial_summary(study: optuna.Study) -> dict[str, Any] | None:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    return {
        "study": study.study_name,
        "number": best.number,
        "value": best.value,
        "params": trial_params(best),
        "run_id": best.user_attrs.get(RUN_ATTR),
        "direction": study.direction.name.lower(),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def status_table(study: optuna.Study) -> Table:
    """The study's trials as a table: number (* marks the best), state, value, parameters, evaluations,
    duration, run."""
    rows = trial_rows(study)
    names: list[str] = []
    for row in rows:
        names += [k for k in row["params"] if k not in names]
    best = best_trial_summary(study)
    table: list[list[str]] = []
    for row in rows:
        marker = "*" if best is not None and row["number"] == best["number"] else ""
        table.append(
            [
                f"{row['number']}{marker}",
                row["state"],
                _fmt(row["value"]),
                *[_fmt(row["params"].get(n)) for n in names],
                str(row["iterations"]),
                _fmt(row["seconds"]),
                row["run_id"] or "-",
            ]
        )
    numeric = {"value", "evals", "seconds"}
    # no column optional: a narrow terminal dropped the seconds; the listing splits the table instead
    columns = [
        Column(h, key=h in ("#", "run"), justify="right" if h in numeric else "left")
        for h in ["#", "state", "value", *names, "evals", "seconds", "run"]
    ]
    title = f"study {study.study_name} ({study.direction.name.lower()})" + ("; * best" if best else "")
    return Table(columns, table, title)


def sweep_report(run_id: str, summary: dict[str, Any]) -> Report:
    """How a sweep's summary reads (kinds sweep and elm_optimize): trials per state and the best trial."""
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary["trials"].items())
    report = Report([f"study {summary['study']}: {counts} (sweep run {summary['run_id']})"])
    metric = summary.get("metric", "value")
    if best := summary.get("best"):
        report.blocks.append(f"best: trial {best['number']} {metric}={best['value']:.5g} {best['params']}")
    if target := summary.get("target"):  # stopped early, with fewer trials than asked for
        sign = ">=" if target["goal"] == "maximize" else "<="
        finished = sum(summary["trials"].get(state, 0) for state in ("COMPLETE", "PRUNED"))
        counted = f"{finished} of {target['trials']} trials"
        report.blocks.append(f"stopped at the target {metric} {sign} {target['value']:g} ({counted})")
    return report


def best_report(best: dict[str, Any]) -> Report:
    lines: list[str | Table] = [
        f"best trial {best['number']}: value={best['value']:.6g} ({best['direction']})"
    ]
    lines += [f"  {name} = {value}" for name, value in best["params"].items()]
    return Report(lines + ([f"run: {best['run_id']}"] if best["run_id"] else []))


def study_best(study: optuna.Study) -> dict[str, Any]:
    """`best_trial_summary`, or NotFoundError while the study has no complete trial."""
    if (best := best_trial_summary(study)) is None:
        raise NotFoundError(f"study {study.study_name!r} has no complete trial yet")
    return best


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    names: list[str] = []
    for row in rows:
        names += [k for k in row["params"] if k not in names]
    columns = ["number", "state", "value", *[f"param:{n}" for n in names], "iterations", "seconds", "run_id"]
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        values = [row["params"].get(n) for n in names]
        params = [json.dumps(v) if isinstance(v, list | dict) else v for v in values]
        writer.writerow(
            [
                row["number"],
                row["state"],
                row["value"],
                *params,
                row["iterations"],
                row["seconds"],
                row["run_id"],
            ]
        )
    atomic_write_text(path, buffer.getvalue())


def plot_param_importances(study: optuna.Study) -> Any:
    """Optuna's parameter-importance plot (its axes), the parameters named as the sweep file names them.
    Optuna's plot calls plt.style.use("ggplot"): kept to this figure, every later plot of the process (a
    worker's run curves) keeps its own style."""
    import matplotlib
    from optuna.visualization import matplotlib as ovm

    with matplotlib.rc_context():
        axes = ovm.plot_param_importances(study)
    labels = [parameter_name(label.get_text()) for label in axes.get_yticklabels()]
    axes.set_yticks(axes.get_yticks(), labels)
    return axes


def plot_parallel_coordinate(study: optuna.Study) -> Any:
    """Optuna's parallel-coordinate plot (its axes) over the parameters' W&B values, named as the sweep file
    names them. Optuna's own drew the variables it samples: `lr@x`, a value before rounding to q, and
    `dropout@u`, a quantile in [0, 1] of which a normal's value is computed, so the axes read neither as the
    parameters nor as their values."""
    import matplotlib
    from optuna.visualization import matplotlib as ovm

    with matplotlib.rc_context():
        return ovm.plot_parallel_coordinate(_with_parameter_values(study))


def _with_parameter_values(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of `study`'s complete trials whose params are the W&B values of the parameters
    Optuna varied (`trial_params`), each with a distribution spanning the values drawn (log where Optuna
    drew it on a log scale, categorical for categorical or non-numeric values)."""
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawn: dict[str, BaseDistribution] = {}
    for t in complete:
        for internal, distribution in t.distributions.items():
            drawn.setdefault(parameter_name(internal), distribution)
    values: dict[str, list[Any]] = {name: [] for name in drawn}
    rows = []
    for t in complete:
        params = trial_params(t)
        row = {n: _plottable(params[n]) for n in drawn if n in params}
        for name, value in row.items():
            values[name].append(value)
        rows.append((t, row))
    distributions: dict[str, BaseDistribution] = {}
    for name, seen in values.items():
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen)
        original = drawn[name]
        if not seen:
            continue
        if isinstance(original, CategoricalDistribution) or not numbers:
            distributions[name] = CategoricalDistribution(list(dict.fromkeys(seen)))
        elif isinstance(original, IntDistribution) and all(isinstance(v, int) for v in seen):
            distributions[name] = IntDistribution(min(seen), max(seen), log=original.log and min(seen) > 0)
        else:
            log = bool(getattr(original, "log", False)) and min(seen) > 0
            distributions[name] = FloatDistribution(float(min(seen)), float(max(seen)), log=log)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" on stderr
    try:
        copy = optuna.create_study(direction=study.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for t, row in rows:
        copy.add_trial(
            optuna.trial.create_trial(
                params=row,
                distributions={n: distributions[n] for n in row},
                values=t.values,
                state=TrialState.COMPLETE,
            )
        )
    return copy


def _plottable(value: Any) -> Any:
    """A W&B value as an Optuna parameter value: a list or mapping as its JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def plot_study(study: optuna.Study, out_dir: Path) -> tuple[list[Path], list[str]]:
    """PNG plots: optimization history, parameter importances, parallel coordinates (and intermediate values).

    Returns the files written and a note for each plot that could not be drawn (e.g. too few trials); the
    file of a plot not drawn is removed, where an earlier export left one.
    """
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out_dir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    written: list[Path] = []
    notes: list[str] = []
    plots: dict[str, Any] = {
        "optimization_history": ovm.plot_optimization_history,
        "param_importances": plot_param_importances,
        "parallel_coordinate": plot_parallel_coordinate,
        "intermediate_values": ovm.plot_intermediate_values,
    }
    for name, draw in plots.items():
        if not complete and name != "intermediate_values":
            notes.append(f"{name}: no complete trial yet")
            continue
        if name == "param_importances":
            varying = {
                p for t in complete for p in t.params if len({str(u.params.get(p)) for u in complete}) > 1
            }
            if len(complete) < MIN_TRIALS_FOR_IMPORTANCE or not varying:
                notes.append(
                    f"{name}: needs at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials with "
                    f"different parameters (have {len(complete)} complete)"
                )
                continue
        if name == "intermediate_values" and not any(
            t.intermediate_values for t in study.get_trials(deepcopy=False)
        ):
            notes.append(f"{name}: no trial reported intermediate values")
            continue
        try:
            # optuna's history and importance plots call plt.style.use("ggplot"), which would restyle every
            # later plot of this process (a worker's run curves, an experiment's chart): kept to this plot
            with warnings.catch_warnings(), matplotlib.rc_context():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
                axes = draw(study)
                fig = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
                fig.set_size_inches(10, 6)
                fig.tight_layout()
                path = out_dir / f"{name}.png"
                fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
        except Exception as exc:  # a plot must never lose the CSV/JSON export
            notes.append(f"{name}: {type(exc).__name__}: {exc}")
            plt.close("all")
    for name in plots:  # an earlier export's plot (another study's, say) would read as this study's
        if (path := out_dir / f"{name}.png") not in written:
            path.unlink(missing_ok=True)
    return written, notes


class StudyExport(StudyRef):
    """`tldrlab sweep export`: the study, and where `export_study` writes."""

    out: Path
    """Directory for trials.csv/json, best.json and plots/."""


def export_study(study: optuna.Study, out_dir: Path) -> dict[str, Any]:
    """trials.csv, trials.json, best.json and plots/*.png under out_dir (an earlier export's best.json or plot
    that this study has none of is removed); returns what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    _write_csv(rows, out_dir / "trials.csv")
    atomic_write_json(out_dir / "trials.json", {"study": study.study_name, "trials": rows})
    files = [out_dir / "trials.csv", out_dir / "trials.json"]
    best = best_trial_summary(study)
    if best is not None:
        atomic_write_json(out_dir / "best.json", best)
        files.append(out_dir / "best.json")
    else:  # an earlier export's, of another study or of this one's trials since deleted: not this best
        (out_dir / "best.json").unlink(missing_ok=True)
    plots, notes = plot_study(study, out_dir / "plots")
    return {"files": [str(p) for p in files + plots], "notes": notes, "trials": len(rows)}


def export_report(exported: dict[str, Any]) -> Report:
    """What `export_study` wrote, and the plots it skipped (why)."""
    return Report([*(f"wrote {p}" for p in exported["files"]), *(f"skipped {n}" for n in exported["notes"])])
