"""`tldrlab elm prepare|train|generate|evaluate|optimize|compare`: the ELM summary adapter.

tldrlab elm prepare --data ../shared/data/debian_descriptions --limit 4000 --out data/elm
tldrlab elm train --data data/elm --epochs 2 --drift-weight 0.03
tldrlab elm train --resume elm_train-20260101-...           # continue from the last checkpoint
tldrlab elm generate --model elm_train-... --data data/elm --split test --output preds.jsonl
tldrlab elm evaluate --predictions preds.jsonl
tldrlab elm optimize --data data/elm --trials 20 --jobs 2
tldrlab elm compare --data ../shared/data/debian_descriptions --minutes 10
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from tldrlab.cli.options import Flag
from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.elm.compare import compare_elm_t5, markdown_table
from tldrlab.elm.evaluate import predict
from tldrlab.runs.atomic import atomic_write_text

console = Console()
elm_app = typer.Typer(
    help="ELM summary adapter: document embeddings in, summaries out.", no_args_is_help=True
)


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
    rows = predict(
        model, data=data, split=split, input=input, texts=text or (), limit=limit,
        max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
    )  # fmt: skip
    for row in rows[:10]:
        console.print(
            f"- {row['prediction']}" + (f"   [dim](ref: {row['reference']})[/]" if "reference" in row else "")
        )
    if output:
        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        console.print(f"{len(rows)} predictions written to {output}")


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

    rows = compare_elm_t5(
        data, out, minutes=minutes, limit=limit, eval_limit=eval_limit, lm_size=lm_size,
        hidden_dim=hidden_dim, t5_size=t5_size, seed=seed, eval_every=eval_every, threads=threads or None,
        echo=console.print,
    )  # fmt: skip
    console.print(markdown_table(rows))
    console.print(f"written: {out / 'comparison.md'}, {out / 'comparison.png'}")


ELM_TRAIN_ALIASES: dict[str, str | tuple[str, ...]] = {
    "model.lm": "--lm",
    "model.lm_size": "--lm-size",
    "model.freeze_lm": "--freeze-lm/--train-lm",
    "model.hidden_dim": "--hidden-dim",
    "model.num_prefix_tokens": "--prefix-tokens",
    "model.dropout": "--dropout",
    "model.residual_scale": "--residual-scale",
    "model.gradient_checkpointing": "--gradient-checkpointing/--no-gradient-checkpointing",
    "loss.use_contrastive_loss": "--use-contrastive/--no-contrastive",
    "loss.contrastive_weight": "--contrastive-weight",
    "loss.use_text_drift_loss": "--use-drift-loss/--no-drift-loss",
    "loss.text_drift_weight": "--drift-weight",
    "loss.text_drift_target_similarity": "--drift-target-similarity",
    "train.lr": ("--lr", "--learning-rate"),
    "train.batch_size": "--batch-size",
    "train.grad_accum_steps": "--grad-accum-steps",
    "train.max_minutes": "--max-minutes",
    "train.early_stopping_patience": "--early-stopping-patience",
    "init_adapter": "--resume-from",
}
BF16 = Flag("train.precision", ("--use-bf16", "--bf16"), bool, "bf16 autocast.", convert=lambda on: "bf16")


def register(app: typer.Typer) -> None:
    for spec in (
        RunCommand(
            "elm prepare",
            "elm_prepare",
            "tldrlab elm prepare --data ../shared/data/debian_descriptions --limit 4000 --out data/elm",
        ),
        RunCommand(
            "elm train",
            "elm_train",
            "tldrlab elm train --data data/elm --epochs 2 --drift-weight 0.03",
            aliases=ELM_TRAIN_ALIASES,
            extra=(BF16,),
        ),
        RunCommand(
            "elm evaluate",
            "elm_evaluate",
            "tldrlab elm evaluate --predictions preds.jsonl",
        ),
        RunCommand(
            "elm optimize",
            "elm_optimize",
            "tldrlab elm optimize --data data/elm --trials 20 --jobs 2",
            aliases={
                **{f"base.{k}": v for k, v in ELM_TRAIN_ALIASES.items()},
                "base.data": "--data",
                **{
                    f"base.{n}": "--" + n.replace("_", "-")
                    for n in ("epochs", "max_steps", "eval_samples", "limit")
                },
                "study": ("--study-name",),
            },
        ),
        RunCommand(
            "elm compare-lm",
            "elm_compare_lm",
            "tldrlab elm compare-lm --data ../shared/data/debian_descriptions --cpu-minutes 15",
        ),
    ):
        add(elm_app, spec)
    app.add_typer(elm_app, name="elm")
