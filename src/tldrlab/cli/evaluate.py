"""`tldrlab eval | generate | score RUN`: evaluate, sample from and score a trained model.

RUN is a run id (or unique prefix) whose `<run_dir>/model` holds the model, or a model directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def generate_options(**settings: object) -> Any:
    """GenerateOptions from CLI values, with a clear error (not a traceback) for bad ones."""
    from pydantic import ValidationError

    from tldrlab.errors import InvalidInputError
    from tldrlab.evaluate.config import GenerateOptions

    try:
        return GenerateOptions.model_validate(settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid generation options: {problems}") from exc


def eval_command(
    run: str = typer.Argument(..., help="Run id (or prefix) or model directory."),
    split: str | None = typer.Option(
        None, help="Data split to evaluate (default: the run's validation split)."
    ),
    data: Path | None = typer.Option(
        None, help="Evaluate on this file or data set instead of the run's data."
    ),
    data_format: str | None = typer.Option(
        None, "--format", help="Reader format of --data (default: detect)."
    ),
    max_samples: int | None = typer.Option(None, "--max-samples", help="Records (seq2seq) or blocks (LM)."),
    bertscore: bool = typer.Option(True, "--bertscore/--no-bertscore", help="Seq2seq: compute BERTScore."),
    seed: int = typer.Option(0, help="Seed of sampled generations."),
    temperature: float = typer.Option(0.0, help="0 = greedy generation."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Longest generation."),
    max_source_len: int | None = typer.Option(
        None, "--max-source-len", help="Source tokens kept (default: the run's setting, else 256)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Examples generated together (default 16; 1 measures per-summary latency)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Evaluate a model (LM loss/perplexity, seq2seq ROUGE/BERTScore/lengths) into eval.json + samples.jsonl.

    Example: tldrlab eval train-20260101 --split validation --max-samples 100
    """
    from tldrlab.errors import NotFoundError
    from tldrlab.evaluate.run_eval import evaluate_target

    if data is not None and not data.exists():
        raise NotFoundError(f"evaluation data not found: {data}")
    generation = generate_options(temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)
    # evaluate_target shows its own progress bar (examples/s, ETA) on stderr.
    result = evaluate_target(
        run,
        data=str(data) if data else None,
        format=data_format,
        split=split,
        max_samples=max_samples,
        bertscore=bertscore,
        generation=generation,
        batch_size=batch_size,
        max_source_len=max_source_len,
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    table = Table("metric", "value", title=f"{result['model']} ({result['task']}) -> {result['out_dir']}")
    for key, value in result["metrics"].items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"eval run {result['run_id']}; samples in {Path(result['out_dir']) / 'samples.jsonl'}")
    for warning in result.get("warnings", []):
        err_console.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)


def generate_command(
    run: str = typer.Argument(..., help="Run id (or prefix) or model directory."),
    prompt: list[str] = typer.Option(
        ..., "--prompt", "-p", help="Prompt (LM) or document (seq2seq, chat); repeatable."
    ),
    temperature: float = typer.Option(0.8, help="Sampling temperature; 0 = greedy."),
    top_k: int = typer.Option(0, "--top-k", help="Sample among the k most likely tokens (0: all)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling threshold (1.0: off)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Most tokens to generate."),
    stop: list[str] = typer.Option([], "--stop", help="Stop at this string (repeatable)."),
    seed: int = typer.Option(0, help="Same seed, same output."),
    num_sequences: int = typer.Option(1, "--num-sequences", "-n", help="Outputs per prompt."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Generate text from a trained model.

    Example: tldrlab generate train-20260101 --prompt "ROMEO:" --temperature 0.8 --top-k 40 -n 3
    """
    from tldrlab.errors import InvalidInputError
    from tldrlab.evaluate.generate import generate
    from tldrlab.models.io import load_model

    options = generate_options(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        stop=stop,
        seed=seed,
        num_return_sequences=num_sequences,
    )
    model, tokenizer, name = load_model(run)
    if tokenizer is None:
        raise InvalidInputError(f"{run}: the saved model has no tokenizer files")
    outputs = generate(model, tokenizer, list(prompt), options)
    from tldrlab.evaluate.metrics import EMPTY_OUTPUT_CAUSE, empty_count

    empty = empty_count([o for outs in outputs for o in outs])
    if empty:
        total = sum(len(outs) for outs in outputs)
        err_console.print(
            f"[yellow]warning[/] {empty} of {total} outputs are empty: {escape(EMPTY_OUTPUT_CAUSE)}",
            highlight=False,
        )
    if as_json:
        typer.echo(json.dumps([{"prompt": p, "outputs": o} for p, o in zip(prompt, outputs, strict=True)]))
        return
    for text, outs in zip(prompt, outputs, strict=True):
        console.rule(f"[bold]{name}[/] prompt: {text[:60]!r}")
        for i, out in enumerate(outs):
            console.print(f"[{i}] {out}" if out.strip() else f"[{i}] (empty)", highlight=False, markup=False)


def score_command(
    run: str = typer.Argument(..., help="Run id (or prefix) or model directory."),
    text: str = typer.Option(..., "--text", help="Text to score."),
    top_k: int = typer.Option(3, "--top-k", help="Top predictions shown per position."),
    source: str = typer.Option("", help="Seq2seq: the source document the text is scored against."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score a text: loss, perplexity, per-token surprisal (bits) and top-k predictions.

    Example: tldrlab score train-20260101 --text "To be, or not to be" --top-k 3
    """
    from tldrlab.errors import InvalidInputError
    from tldrlab.evaluate.score import score_text
    from tldrlab.models.io import load_model

    model, tokenizer, _ = load_model(run)
    if tokenizer is None:
        raise InvalidInputError(f"{run}: the saved model has no tokenizer files")
    result = score_text(model, tokenizer, text, top_k, source=source)
    if as_json:
        typer.echo(json.dumps(result))
        return
    console.print(
        f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.2f}, "
        f"{result['num_tokens']} tokens" + (" (truncated)" if result["truncated"] else "")
    )
    table = Table("token", "surprisal (bits)", f"top {top_k}")
    for i, token in enumerate(result["tokens"]):
        top = result["topk"][i] if result["topk"] else []
        table.add_row(
            repr(token),
            f"{result['surprisal_bits'][i]:.2f}",
            "  ".join(f"{t['token']!r} {t['prob']:.2f}" for t in top),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("generate")(generate_command)
    app.command("score")(score_command)
