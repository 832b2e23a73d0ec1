"""`tldrlab eval | generate | score MODEL`: runs of the kinds evaluate, generate and score.

MODEL is any model reference (`tldrlab.models.resolve`): a run id (or unique prefix), a model directory, a
GGUF file, an installed model or `smollm2`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.evaluate.metrics import EMPTY_OUTPUT_CAUSE, empty_count

console = Console()
err_console = Console(stderr=True)
GENERATION: dict[str, str | tuple[str, ...]] = {
    **{n: "--" + n.replace("_", "-") for n in ("temperature", "max_new_tokens", "top_k", "top_p", "stop")},
    "num_return_sequences": ("--num-sequences", "-n"),
}


def evaluate(config: Any) -> tuple[str, Any]:
    """Evaluations are children of the evaluated run (`evaluate_target` links them)."""
    # lazy: loads torch (kept off `tldrlab --help`)
    from tldrlab.evaluate.launchers import evaluate_target

    result = evaluate_target(config.model_run, **config.overrides())
    return result["run_id"], result


def report_eval(run_id: str, result: Any) -> None:
    table = Table("metric", "value", title=f"{result['model']} ({result['task']}) -> {result['out_dir']}")
    for key, value in result["metrics"].items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"eval run {run_id}; samples in {Path(result['out_dir']) / 'samples.jsonl'}")
    for warning in result.get("warnings", []):
        err_console.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)


def report_generate(run_id: str, result: Any) -> None:
    for i, outputs in enumerate(result["outputs"]):
        console.rule(f"[bold]{result['model']}[/] prompt {i + 1}  [dim]run {run_id}[/]")
        for j, out in enumerate(outputs):
            console.print(f"[{j}] {out}" if out.strip() else f"[{j}] (empty)", highlight=False, markup=False)

    if empty := empty_count([o for outs in result["outputs"] for o in outs]):
        total = sum(len(outs) for outs in result["outputs"])
        err_console.print(
            f"[yellow]warning[/] {empty} of {total} outputs are empty: {escape(EMPTY_OUTPUT_CAUSE)}"
        )


def report_score(run_id: str, result: Any) -> None:
    if "per_record" in result:  # a data set: the totals, then one row per record
        console.print(
            f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.2f}, "
            f"{result['num_tokens']} tokens in {result['records']} records  [dim]run {run_id}[/]"
        )
        records = Table("record", "loss", "perplexity", "tokens")
        for row in result["per_record"]:
            records.add_row(
                row["id"], f"{row['loss']:.4f}", f"{row['perplexity']:.2f}", str(row["num_tokens"])
            )
        console.print(records)
        return
    truncated = " (truncated)" if result["truncated"] else ""
    console.print(
        f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.2f}, "
        f"{result['num_tokens']} tokens{truncated}  [dim]run {run_id}[/]"
    )
    if "tokens" not in result:  # detail_level summary
        return
    table = Table("token", "surprisal (bits)", "top predictions")
    for i, token in enumerate(result["tokens"]):
        top = result["topk"][i] if result["topk"] else []
        alternatives = "  ".join(f"{t['token']!r} {t['prob']:.2f}" for t in top)
        table.add_row(repr(token), f"{result['surprisal_bits'][i]:.2f}", alternatives)
    console.print(table)


def register(app: typer.Typer) -> None:
    model = ("model_run",)
    for spec in (
        RunCommand(
            "eval",
            "evaluate",
            "tldrlab eval train-20260101 --split validation --max-samples 100",
            aliases={f"generation.{k}": v for k, v in GENERATION.items()},
            arguments=model,
            paths=(*model, "data"),
            report=report_eval,
            launcher=evaluate,
        ),
        RunCommand(
            "generate",
            "generate",
            'tldrlab generate train-20260101 --prompt "ROMEO:" --temperature 0.8 --top-k 40 -n 3',
            aliases={"prompts": ("--prompt", "-p"), **{f"options.{k}": v for k, v in GENERATION.items()}},
            arguments=model,
            verbatim=("prompts", "options.stop"),
            paths=model,
            report=report_generate,
        ),
        RunCommand(
            "score",
            "score",
            'tldrlab score train-20260101 --text "To be, or not to be" --top-k 3',
            arguments=model,
            paths=model,
            report=report_score,
        ),
    ):
        add(app, spec)
