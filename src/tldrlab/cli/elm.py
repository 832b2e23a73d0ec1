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

from pathlib import Path
from typing import Any

import typer

from tldrlab.cli.options import Flag, config_command
from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.cli.tables import emit, print_report
from tldrlab.elm.compare import compare_elm_t5, markdown_table
from tldrlab.elm.config import LOOP_FIELDS, ElmGenerateOptions, ElmT5CompareConfig
from tldrlab.elm.evaluate import generate_predictions, predictions_report
from tldrlab.elm.layout import refuse_layout_file
from tldrlab.launch import check_writable
from tldrlab.report import Report

elm_app = typer.Typer(
    help="ELM summary adapter: document embeddings in, summaries out.", no_args_is_help=True
)


def generate_command(options: Any, as_json: bool) -> None:
    """Summaries from embeddings: of a prepared split, a synthesis file, or raw --text documents.

    Example: tldrlab elm generate --model RUN_ID --data data/elm --split test --output preds.jsonl
    """
    if options.output:  # before the model loads: --output <home>/tldrlab.db replaced the run registry
        check_writable("--output", Path(options.output))
        refuse_layout_file("--output", Path(options.output))
    rows = generate_predictions(options)
    # as `tldrlab generate --json`: one object naming the model, every output (here each prediction row:
    # the prediction, with the record's id and reference when it has them), and where they were written
    result = {"model": options.model, "predictions": rows, "output": options.output}
    emit(result, lambda: predictions_report(rows, options.output), as_json=as_json)


def compare_command(config: Any) -> None:
    """The ELM adapter vs a from-scratch T5 under the same CPU budget: ROUGE, BERTScore, composite, length.

    Example: tldrlab elm compare --data ../shared/data/debian_descriptions --minutes 10
    """
    rows = compare_elm_t5(config, echo=print)
    written = f"written: {Path(config.out) / 'comparison.md'}, {Path(config.out) / 'comparison.png'}"
    print_report(Report([markdown_table(rows), written]))


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
            same=tuple((own, f"train.{loop}") for loop, own in LOOP_FIELDS),
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
            same=tuple((f"base.{own}", f"base.train.{loop}") for loop, own in LOOP_FIELDS),
        ),
        RunCommand(
            "elm compare-lm",
            "elm_compare_lm",
            "tldrlab elm compare-lm --data ../shared/data/debian_descriptions --cpu-minutes 15",
        ),
    ):
        add(elm_app, spec)
    config_command(
        elm_app, "generate", ElmGenerateOptions, generate_command, verbatim=("text",), as_json=True
    )
    config_command(elm_app, "compare", ElmT5CompareConfig, compare_command)
    app.add_typer(elm_app, name="elm")
