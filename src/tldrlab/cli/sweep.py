"""`tldrlab sweep run | status | best | export | examples`: W&B sweep files run on Optuna.

tldrlab sweep run sweep.yaml --trials 8                 # SQLite under the home; run again to resume
tldrlab sweep run sweep.yaml --workers 2 --storage postgresql://user:pw@db/sweeps
tldrlab sweep status tiny-t5
tldrlab sweep best tiny-t5 --json
tldrlab sweep export tiny-t5 --out sweep-report/
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from tldrlab.cli.tables import emit
from tldrlab.errors import NotFoundError
from tldrlab.logs import configure_console
from tldrlab.sweep import examples_dir
from tldrlab.sweep.spec import load_sweep

sweep_app = typer.Typer(help="Hyperparameter sweeps: W&B sweep YAML run on Optuna.", no_args_is_help=True)
console = Console()

STORAGE_HELP = "Study storage: sqlite:///PATH or postgresql://... (default: SQLite file <home>/sweeps.db)."


@sweep_app.command("run")
def run_command(
    sweep_file: Path = typer.Argument(..., help="A W&B sweep YAML file (see `tldrlab sweep examples`)."),
    trials: int | None = typer.Option(
        None,
        "--trials",
        "-n",
        help="Total finished trials wanted in the study (default: run_cap, grid size or 10).",
    ),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes sharing the study."),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
    study: str | None = typer.Option(
        None, "--study", help="Study name (default: the file's name: key or stem)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars or run logs inside trials."),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON."),
) -> None:
    """Run a sweep, or resume it: finished trials are kept, interrupted ones re-run.

    Example: tldrlab sweep run sweep.yaml --trials 6
    """
    # lazy: loads numpy, optuna, torch (kept off `tldrlab --help`)
    from tldrlab.sweep.report import sweep_report
    from tldrlab.sweep.runner import run_sweep

    spec = load_sweep(sweep_file)
    if quiet:
        configure_console("WARNING")
    summary = run_sweep(
        spec, trials=trials, workers=workers, storage=storage, study_name=study, quiet=quiet,
        echo=lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True),
    )  # fmt: skip
    emit(summary, lambda: sweep_report(summary["run_id"], summary), as_json=as_json)


@sweep_app.command("status")
def status_command(
    study: str = typer.Argument(..., help="Study name."),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """Table of a study's trials: number, state, value, parameters, evaluations, duration, run.

    Example: tldrlab sweep status tiny-t5
    """
    # lazy: loads optuna (kept off `tldrlab --help`)
    from tldrlab.sweep.report import status_table, trial_rows
    from tldrlab.sweep.storage import load_study

    loaded = load_study(study, storage)
    emit(trial_rows(loaded), lambda: status_table(loaded), as_json=as_json, lines=True)


@sweep_app.command("best")
def best_command(
    study: str = typer.Argument(..., help="Study name."),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The best trial's parameters and value.

    Example: tldrlab sweep best tiny-t5 --json
    """
    # lazy: loads optuna (kept off `tldrlab --help`)
    from tldrlab.sweep.report import best_report, best_trial_summary
    from tldrlab.sweep.storage import load_study

    best = best_trial_summary(load_study(study, storage))
    if best is None:
        raise NotFoundError(f"study {study!r} has no complete trial yet")
    emit(best, lambda: best_report(best), as_json=as_json)


@sweep_app.command("export")
def export_command(
    study: str = typer.Argument(..., help="Study name."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for trials.csv/json, best.json and plots/."),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
) -> None:
    """Export trials as CSV/JSON and PNG plots (history, importances, parallel coordinates).

    Example: tldrlab sweep export tiny-t5 --out sweep-report/
    """
    # lazy: loads optuna (kept off `tldrlab --help`)
    from tldrlab.sweep.report import export_study
    from tldrlab.sweep.storage import load_study

    result = export_study(load_study(study, storage), out)
    for path in result["files"]:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    for note in result["notes"]:
        console.print(f"[yellow]skipped[/] {note}", highlight=False, soft_wrap=True)


@sweep_app.command("examples")
def examples_command(
    as_json: bool = typer.Option(False, "--json", help="JSON lines (name, path) instead of paths."),
) -> None:
    """List the example sweep files shipped with tldrlab (copy one and edit its paths).

    Example: cp $(tldrlab sweep examples | grep tiny) my-sweep.yaml
    """

    for path in sorted(examples_dir().glob("*.yaml")):
        typer.echo(json.dumps({"name": path.stem, "path": str(path)}) if as_json else str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(sweep_app, name="sweep")
