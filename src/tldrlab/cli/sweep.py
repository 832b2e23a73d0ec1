"""`tldrlab sweep run | status | best | export | examples`: W&B sweep files run on Optuna.

tldrlab sweep run sweep.yaml --trials 8                 # SQLite under the home; run again to resume
tldrlab sweep run sweep.yaml --workers 2 --storage postgresql://user:pw@db/sweeps
tldrlab sweep status tiny-t5
tldrlab sweep best tiny-t5 --json
tldrlab sweep export tiny-t5 --out sweep-report/
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

from tldrlab.cli.options import AS_JSON, Flag, config_command
from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.cli.tables import emit
from tldrlab.sweep import examples_dir
from tldrlab.sweep.spec import sweep_file_settings

sweep_app = typer.Typer(help="Hyperparameter sweeps: W&B sweep YAML run on Optuna.", no_args_is_help=True)
# stderr, as every run's log: stdout holds the result alone, so `sweep run --json` output parses as JSON
console = Console(stderr=True)


def launch_printing(config: Any) -> tuple[str, Any]:
    """Each line the sweep logs (a trial ended) is printed to stderr as it comes."""
    # lazy: loads numpy, optuna, torch (kept off `tldrlab --help`)
    from tldrlab.sweep.runner import launch_sweep

    launched = launch_sweep(
        config, echo=lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True)
    )
    return launched.record.id, launched.result or {}


SWEEP_FILE = Flag(
    "", (), str, "A W&B sweep YAML file (see `tldrlab sweep examples`).", metavar="SWEEP_FILE",
    convert=sweep_file_settings,
)  # fmt: skip
SWEEP_RUN = RunCommand(
    "sweep run", "sweep", "tldrlab sweep run sweep.yaml --trials 6",
    help="Run a sweep, or resume it: finished trials are kept, interrupted ones re-run.",
    aliases={"trials": "-n", "workers": "-w"}, exclude=("sweep", "source"), extra=(SWEEP_FILE,),
    launcher=launch_printing,
)  # fmt: skip


def status_command(ref: Any, as_json: bool) -> None:
    """Table of a study's trials: number, state, value, parameters, evaluations, duration, run.

    Example: tldrlab sweep status tiny-t5
    """
    # lazy: loads optuna (kept off `tldrlab --help`)
    from tldrlab.sweep.report import status_table, trial_rows
    from tldrlab.sweep.storage import load_study

    loaded = load_study(ref.study, ref.storage)
    emit(trial_rows(loaded), lambda: status_table(loaded), as_json=as_json, lines=True)


def best_command(ref: Any, as_json: bool) -> None:
    """The best trial's parameters and value.

    Example: tldrlab sweep best tiny-t5 --json
    """
    # lazy: loads optuna (kept off `tldrlab --help`)
    from tldrlab.sweep.report import best_report, study_best
    from tldrlab.sweep.storage import load_study

    best = study_best(load_study(ref.study, ref.storage))
    emit(best, lambda: best_report(best), as_json=as_json)


def export_command(ref: Any, as_json: bool) -> None:
    """Export trials as CSV/JSON and PNG plots (history, importances, parallel coordinates).

    Example: tldrlab sweep export tiny-t5 --out sweep-report/
    """
    # lazy: loads optuna (kept off `tldrlab --help`)
    from tldrlab.sweep.report import export_report, export_study
    from tldrlab.sweep.storage import load_study

    exported = export_study(load_study(ref.study, ref.storage), ref.out)
    emit(exported, lambda: export_report(exported), as_json=as_json)


@sweep_app.command("examples")
def examples_command(as_json: bool = AS_JSON) -> None:
    """List the example sweep files shipped with tldrlab (copy one and edit its paths).

    Example: cp $(tldrlab sweep examples | grep tiny) my-sweep.yaml
    """
    for path in sorted(examples_dir().glob("*.yaml")):
        typer.echo(json.dumps({"name": path.stem, "path": str(path)}) if as_json else str(path))


def register(app: typer.Typer) -> None:
    add(sweep_app, SWEEP_RUN)
    study = "tldrlab.sweep.storage:StudyRef"
    config_command(sweep_app, "status", study, status_command, arguments=("study",), as_json=True)
    config_command(sweep_app, "best", study, best_command, arguments=("study",), as_json=True)
    config_command(
        sweep_app,
        "export",
        "tldrlab.sweep.report:StudyExport",
        export_command,
        arguments=("study",),
        aliases={"out": "-o"},
        as_json=True,
    )
    app.add_typer(sweep_app, name="sweep")
