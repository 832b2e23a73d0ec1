"""`tldrlab elm prepare|train|generate|evaluate|optimize|compare`: the ELM summary adapter.

tldrlab elm prepare --data ../shared/data/debian_descriptions --limit 4000 --out data/elm
tldrlab elm train --data data/elm --epochs 2 --drift-weight 0.03     # generated: see runkinds
tldrlab elm train --resume elm_train-20260101-...           # continue from the last checkpoint
tldrlab elm generate --model elm_train-... --data data/elm --split test --output preds.jsonl
tldrlab elm evaluate --predictions preds.jsonl
tldrlab elm optimize --data data/elm --trials 20 --jobs 2
tldrlab elm compare --data ../shared/data/debian_descriptions --minutes 10
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tldrlab.cli import runkinds

console = Console()
elm_app = typer.Typer(
    help="ELM summary adapter: document embeddings in, summaries out.", no_args_is_help=True
)


def _stats_table(stats: dict[str, dict[str, Any]]) -> Table:
    table = Table("split", "records", "embeddings", "dim", "task types", "target words (mean / max)")
    for split, s in stats.items():
        tasks = ", ".join(f"{k}: {v}" for k, v in s["task_types"].items())
        table.add_row(
            split, str(s["records"]), str(s["embeddings"]), str(s["dim"]), tasks,
            f"{s['target_words_mean']} / {s['target_words_max']}",
        )  # fmt: skip
    return table


@elm_app.command("prepare")
def prepare_command(
    data: Path = typer.Option(..., help="Pair data (any records format), or an ELM directory to filter."),
    out: Path = typer.Option(..., help="Output directory (synthesis/ + embeddings/)."),
    format: str | None = typer.Option(None, "--format", help="Data format (detected when omitted)."),
    embedder: str = typer.Option("minilm", help="minilm (default) or a sentence-transformers path."),
    task: str = typer.Option("summary", help="Task type written, or kept when filtering an ELM directory."),
    template: str | None = typer.Option(None, help="Prompt template with {text} (default: the seed's)."),
    limit: int | None = typer.Option(None, help="Read at most this many training records."),
    eval_limit: int | None = typer.Option(None, "--eval-limit", help="At most this many val / test records."),
    seed: int = typer.Option(0, help="Seed of the val / test split."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Embed documents and write per-split synthesis JSONL + safetensors embeddings; print statistics.

    Example: tldrlab elm prepare --data ../shared/data/debian_descriptions --limit 4000 --out data/elm
    """
    from tldrlab.elm.prepare import DEFAULT_TEMPLATE, prepare_dataset

    stats = prepare_dataset(
        data, out, format=format, embedder=embedder, task=task, template=template or DEFAULT_TEMPLATE,
        limit=limit, eval_limit=eval_limit, seed=seed, progress=not quiet,
    )  # fmt: skip
    console.print(_stats_table(stats))
    console.print(f"written to {out}")


@elm_app.command("generate")
def generate_command(
    model: str = typer.Option(..., help="A saved ELM directory or an elm_train run id."),
    data: Path | None = typer.Option(None, help="An ELM data directory (with --split)."),
    split: str = typer.Option("test", help="train, val or test."),
    input: Path | None = typer.Option(None, "--input", help="A <split>_synthesis.jsonl in an ELM layout."),
    text: list[str] | None = typer.Option(None, "--text", help="Raw documents to summarise (embedded here)."),
    output: Path | None = typer.Option(None, help="Write prediction rows (JSON lines) here."),
    limit: int | None = typer.Option(None, help="At most this many records."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    seed: int = typer.Option(0),
) -> None:
    """Summaries from embeddings: of a prepared split, a synthesis file, or raw --text documents.

    Example: tldrlab elm generate --model RUN_ID --data data/elm --split test --output preds.jsonl
    """
    import torch

    from tldrlab.elm.evaluate import predict_split
    from tldrlab.elm.model import generate_summaries, load_elm, resolve_elm_dir
    from tldrlab.elm.prepare import DEFAULT_TEMPLATE, load_split
    from tldrlab.errors import ConfigError
    from tldrlab.runs.atomic import atomic_write_text

    if sum(x is not None and x != [] for x in (data, input, text)) != 1:
        raise ConfigError("give exactly one of --data DIR, --input FILE or --text TEXT")
    elm, tokenizer = load_elm(model)
    if text:
        from tldrlab.embed import get_embedder

        saved = json.loads((resolve_elm_dir(model) / "elm_config.json").read_text(encoding="utf-8"))
        vectors = torch.from_numpy(get_embedder(saved.get("embedder") or "minilm").encode(list(text)))
        preds = generate_summaries(
            elm, tokenizer, vectors, [DEFAULT_TEMPLATE] * len(text),
            max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
        )  # fmt: skip
        rows: list[dict[str, Any]] = [{"prediction": p} for p in preds]
    else:
        if input is not None:
            name = input.name.removesuffix("_synthesis.jsonl")
            directory, split = input.resolve().parent.parent, name
        else:
            assert data is not None
            directory = data
        loaded = load_split(directory, split)
        rows = predict_split(
            elm, tokenizer, loaded.records[:limit], loaded.embeddings,
            max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
        )  # fmt: skip
    for row in rows[:10]:
        console.print(
            f"- {row['prediction']}" + (f"   [dim](ref: {row['reference']})[/]" if "reference" in row else "")
        )
    if output:
        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        console.print(f"{len(rows)} predictions written to {output}")


@elm_app.command("evaluate")
def evaluate_command(
    predictions: Path = typer.Option(..., help="JSON lines with `prediction` (and `reference`)."),
    references: Path | None = typer.Option(None, help="Separate references (e.g. test_synthesis.jsonl)."),
    bertscore_model: str | None = typer.Option(None, "--bertscore-model", help="Local encoder directory."),
    num_layers: int | None = typer.Option(None, "--num-layers", help="Encoder layer for BERTScore."),
    output: Path | None = typer.Option(None, help="Write the metrics as JSON here."),
) -> None:
    """BERTScore P/R/F1 + composite, ROUGE, length ratio, empty-prediction and unique-token rates.

    Example: tldrlab elm evaluate --predictions preds.jsonl
    """
    from tldrlab.elm.evaluate import evaluate_files
    from tldrlab.runs.atomic import atomic_write_json

    metrics = evaluate_files(predictions, references, bertscore_model=bertscore_model, num_layers=num_layers)
    table = Table("metric", "value")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    if output:
        atomic_write_json(output, metrics)


@elm_app.command("optimize")
def optimize_command(
    data: Path = typer.Option(..., help="A directory written by `tldrlab elm prepare`."),
    trials: int = typer.Option(20, help="Finished trials the study should hold (resume counts old ones)."),
    jobs: int = typer.Option(1, help="Worker processes sharing the study."),
    storage: str | None = typer.Option(
        None, help="sqlite:///PATH (default: <home>/sweeps.db) or postgresql://..."
    ),
    study: str = typer.Option("elm-summary-optimization", "--study-name", "--study", help="Study name."),
    warmup: int = typer.Option(2, help="Median pruning: evaluations before a trial may be pruned."),
    hidden_dims: str | None = typer.Option(
        None, "--hidden-dims", help="Adapter widths searched, e.g. 256,512."
    ),
    lm: str = typer.Option("scratch", help="The LM every trial uses (see `elm train --lm`)."),
    lm_size: str = typer.Option("tiny", "--lm-size"),
    epochs: float = typer.Option(2.0, help="Epochs per trial (seed: 2)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Steps per trial instead of epochs."),
    eval_samples: int = typer.Option(32, "--eval-samples", help="Summaries scored per evaluation."),
    limit: int | None = typer.Option(None, help="Train each trial on at most this many records."),
    seed: int = typer.Option(0, help="Seed of the sampler and of each trial's training."),
) -> None:
    """Bayesian optimisation (TPE, median pruning) of the seed's search space for the BERTScore composite.

    Example: tldrlab elm optimize --data data/elm --trials 20 --jobs 2
    """
    from tldrlab.elm.optimize import optimize_elm
    from tldrlab.elm.train import parse_elm_config
    from tldrlab.errors import ConfigError

    dims = None
    if hidden_dims:
        try:
            dims = [int(x) for x in hidden_dims.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"--hidden-dims must be integers separated by commas; got {hidden_dims!r}"
            ) from None
    raw: dict[str, Any] = {
        "data": str(data.resolve()), "model": {"lm": lm, "lm_size": lm_size}, "epochs": epochs,
        "max_steps": max_steps, "eval_samples": eval_samples, "limit": limit, "train": {"seed": seed},
    }  # fmt: skip
    base = parse_elm_config(raw)
    summary = optimize_elm(
        base, trials=trials, jobs=jobs, storage=storage, study_name=study, warmup=warmup, seed=seed,
        hidden_dims=dims, echo=console.print,
    )  # fmt: skip
    console.print(f"trials: {summary['trials']}")
    if "best" in summary:
        best = summary["best"]
        console.print(
            f"best: trial {best['number']} bertscore_composite={best['value']:.4f} (run {best['run_id']})"
        )
        console.print(json.dumps(best["params"], indent=2))


@elm_app.command("compare")
def compare_command(
    data: Path = typer.Option(..., help="Pair data, e.g. ../shared/data/debian_descriptions."),
    out: Path = typer.Option(Path("elm_compare"), help="Output directory (data, table, plot, samples)."),
    minutes: float = typer.Option(10.0, help="Training wall-time budget of each model."),
    limit: int | None = typer.Option(4000, help="Training records."),
    eval_limit: int = typer.Option(200, "--eval-limit", help="Validation and test documents each."),
    lm_size: str = typer.Option("tiny", "--lm-size", help="The ELM's GPT-2 size."),
    hidden_dim: int = typer.Option(256, "--hidden-dim", help="The ELM adapter's MLP width."),
    t5_size: str = typer.Option("tiny", "--t5-size", help="The T5's size."),
    eval_every: int = typer.Option(200, "--eval-every", help="Validation loss every N steps."),
    threads: int = typer.Option(1, help="torch CPU threads for both models (0: torch's default)."),
    seed: int = typer.Option(0),
) -> None:
    """The ELM adapter vs a from-scratch T5 under the same CPU budget: ROUGE, BERTScore, composite, length.

    Example: tldrlab elm compare --data ../shared/data/debian_descriptions --minutes 10
    """
    from tldrlab.elm.compare import compare_elm_t5, markdown_table

    rows = compare_elm_t5(
        data, out, minutes=minutes, limit=limit, eval_limit=eval_limit, lm_size=lm_size,
        hidden_dim=hidden_dim, t5_size=t5_size, seed=seed, eval_every=eval_every, threads=threads or None,
        echo=console.print,
    )  # fmt: skip
    console.print(markdown_table(rows))
    console.print(f"written: {out / 'comparison.md'}, {out / 'comparison.png'}")


def register(app: typer.Typer) -> None:
    runkinds.register(elm_app, "elm")
    app.add_typer(elm_app, name="elm")
