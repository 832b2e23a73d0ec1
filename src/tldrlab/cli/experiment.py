"""`tldrlab experiment dendrites|lm|compress`: the T5 and pretrained-LM compression experiments."""

from __future__ import annotations

from typing import Any

import typer

from tldrlab.cli.options import Flag
from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.errors import ConfigError

experiment_app = typer.Typer(help="Experiments composed from the training pieces.", no_args_is_help=True)


def parse_budget(budget: str) -> dict[str, Any]:
    """'300' -> 300 steps; '30m' / '30min' -> 30 minutes; '2h' -> 120 minutes."""
    text = budget.strip().lower()
    try:
        if text.endswith(("min", "m")):
            return {"budget_minutes": float(text.removesuffix("min").removesuffix("m"))}
        if text.endswith("h"):
            return {"budget_minutes": float(text[:-1]) * 60}
        return {"budget_steps": int(text.removesuffix("steps").removesuffix("step"))}
    except ValueError:
        raise ConfigError(f"--budget {budget!r}: give steps (300) or minutes (30m)") from None


BUDGET = Flag(
    "", ("--budget",), str, "Per arm: optimizer steps (300) or minutes (30m).", convert=parse_budget
)


def register(app: typer.Typer) -> None:
    add(
        experiment_app,
        RunCommand(
            "experiment dendrites",
            "experiment",
            "tldrlab experiment dendrites --data ../shared/data/debian_descriptions --budget 300 --seeds 1,2",
            aliases={
                "compression.compression_ratio": "--compression-ratio",
                "dendrites.max_dendrites": "--max-dendrites",
            },
            extra=(BUDGET,),
            # one budget: minutes, when given, replace the steps (`--budget 300 --budget-steps 100` kept 100)
            same=(("budget_steps", "budget_minutes", "budget"),),
        ),
    )
    add(
        experiment_app,
        RunCommand(
            "experiment lm",
            "lm_experiment",
            "tldrlab experiment lm --data ../shared/data/debian_descriptions --budget 120 --seeds 1,2",
            aliases={
                "budget_steps": "--budget",
                "compression.ratio": "--ratio",
                "compression.importance": "--importance",
                "dendrites.max_dendrites": "--max-dendrites",
            },
        ),
    )
    add(
        experiment_app,
        RunCommand(
            "experiment compress",
            "lm_compress",
            "tldrlab experiment compress smollm2 --ratio 0.5 --calibration-data pairs.jsonl --out half",
            arguments=("model",),
            aliases={"compression.ratio": "--ratio", "compression.importance": "--importance"},
        ),
    )
    app.add_typer(experiment_app, name="experiment")
