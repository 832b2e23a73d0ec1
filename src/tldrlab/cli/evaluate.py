"""`tldrlab eval | generate | score MODEL`: runs of the kinds evaluate, generate and score.

MODEL is any model reference (`tldrlab.models.resolve`): a run id (or unique prefix), a model directory, a
GGUF file, an installed model or `smollm2`.
"""

from __future__ import annotations

import re
from typing import Any

import typer

from tldrlab.cli.runkinds import RunCommand, add

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape_stops(stops: list[str]) -> list[str]:
    r"""Stop strings as typed in a shell, where `--stop "\n\n"` is a backslash and an n twice: `\n`, `\t`
    and `\r` name a line break, a tab and a carriage return, `\\` one backslash (the doc's
    `--stop "\n\n"` never stopped at a blank line)."""
    return [re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], stop) for stop in stops]


GENERATION: dict[str, str | tuple[str, ...]] = {
    **{n: "--" + n.replace("_", "-") for n in ("temperature", "max_new_tokens", "top_k", "top_p", "stop")},
    "num_return_sequences": ("--num-sequences", "-n"),
}


def evaluate(config: Any) -> tuple[str, Any]:
    """Evaluations are children of the evaluated run (`evaluate_target` links them)."""
    # lazy: loads torch (kept off `tldrlab --help`)
    from tldrlab.evaluate.launchers import evaluate_target

    result = evaluate_target(config.model_run, progress=config.progress, **config.overrides())
    return result["run_id"], result


def register(app: typer.Typer) -> None:
    model = ("model_run",)
    for spec in (
        RunCommand(
            "eval",
            "evaluate",
            "tldrlab eval train-20260101 --split validation --max-samples 100",
            aliases={f"generation.{k}": v for k, v in GENERATION.items()},
            arguments=model,
            launcher=evaluate,
            converts={"generation.stop": unescape_stops},
        ),
        RunCommand(
            "generate",
            "generate",
            'tldrlab generate train-20260101 --prompt "ROMEO:" --temperature 0.8 --top-k 40 -n 3',
            aliases={"prompts": ("--prompt", "-p"), **{f"options.{k}": v for k, v in GENERATION.items()}},
            arguments=model,
            verbatim=("prompts", "options.stop"),
            converts={"options.stop": unescape_stops},
        ),
        RunCommand(
            "score",
            "score",
            'tldrlab score train-20260101 --text "To be, or not to be" --top-k 3',
            arguments=model,
        ),
    ):
        add(app, spec)
