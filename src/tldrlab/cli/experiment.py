"""`tldrlab experiment dendrites`: baseline vs compressed vs compressed + PerforatedAI dendrites."""

from __future__ import annotations

import typer

from tldrlab.cli import runkinds

experiment_app = typer.Typer(help="Experiments composed from the training pieces.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    runkinds.register(experiment_app, "experiment")
    app.add_typer(experiment_app, name="experiment")
