"""`tldrlab train`: a run of kind `train` (generated from TrainJobConfig; the short names users know kept)."""

from __future__ import annotations

import typer

from tldrlab.cli.options import Flag
from tldrlab.cli.runkinds import RunCommand, add

TRAIN_ALIASES = {
    "data.path": "--data",
    "data.format": "--format",
    "data.train_split": "--train-split",
    "data.val_split": "--val-split",
    "data.limit": "--limit",
    "data.block_size": "--block-size",
    "data.generate_every": "--generate-every",
    "data.bertscore": "--bertscore/--no-bertscore",
    "tokenizer.path": "--tokenizer",
    "tokenizer.method": "--tokenizer-method",
    "tokenizer.vocab_size": "--vocab-size",
    "model_settings": "--model-config",
    **{f"train.{name}": "--" + name.replace("_", "-") for name in (
        "max_steps", "max_minutes", "batch_size", "grad_accum_steps", "lr", "warmup_steps", "lr_schedule",
        "precision", "eval_every", "checkpoint_every", "early_stopping_patience", "best_metric", "best_mode",
    )},
}  # fmt: skip


def register(app: typer.Typer) -> None:
    add(
        app,
        RunCommand(
            "train",
            "train",
            "tldrlab train --model char_lstm --data input.txt --tokenizer-method char --max-steps 500",
            aliases=TRAIN_ALIASES,
            extra=(
                Flag(
                    "model_settings.size",
                    ("--model-size",),
                    str,
                    "Named size of a t5 or gpt2 model: tiny, mini, small, base (char_lstm has none: give its "
                    "dimensions with --model-settings, e.g. hidden_dim=128).",
                ),
            ),
        ),
    )
