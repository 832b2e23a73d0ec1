"""Which way a metric is better, known from its name: one table for the training loop's best checkpoint
(`train.best_mode` follows `train.best_metric`) and for `runs compare` (regressions, `--fail-on-regression`).

    direction("val_top1_excl")   # -> "higher"
    direction("eval.train_s")    # -> "lower" (a time)
    direction("pred_len_mean")   # -> None: neither way is known

Two tables that disagreed (compare knew no cosine or top-k, the loop no AUC or throughput) let an LVM run
whose top-1 fell pass `--fail-on-regression`; so both read this one. It imports nothing of tldrlab's, so the
config modules (no torch) and `runs` can both use it.
"""

from __future__ import annotations

from typing import Literal

Direction = Literal["lower", "higher"]

BY_WHOLE_NAME: dict[str, Direction] = {"coverage": "higher", "unk_rate": "lower"}
"""Names whose direction holds for that name only: a tokenizer's `coverage` (words with no unknown token);
`highlight_coverage_other`, the coverage of sentences no one marked, says neither."""
LOWER_BETTER = (
    "loss", "perplexity", "ppl", "error", "mse", "seconds", "latency", "empty", "unk_rate",
)  # fmt: skip
"""Parts of a name that make a lower value better (checked before the higher ones: `eval_empty_predictions`,
`top1_error`)."""
HIGHER_BETTER = (
    "rouge", "bleu", "bertscore", "cosine", "top1", "top5", "p_at_", "similarity", "accuracy", "f1", "auc",
    "precision", "recall", "composite", "distinct", "coverage_labelled", "_per_s", "mfu",
)  # fmt: skip
"""Parts of a name that make a higher value better (`_per_s`: a throughput, `tokens_per_s`)."""
TIME_SUFFIX = "_s"
"""A name ending so (`train_s`, `generate_s`) and not a throughput is a time in seconds: lower is better."""


def direction(metric: str) -> Direction | None:
    """Whether lower or higher values of `metric` are better (None: neither is known). Only the part after
    the last dot counts (`eval.rougeL` is an evaluation's `rougeL`)."""
    name = metric.lower().rsplit(".", 1)[-1]
    if name in BY_WHOLE_NAME:
        return BY_WHOLE_NAME[name]
    if any(part in name for part in LOWER_BETTER):
        return "lower"
    if any(part in name for part in HIGHER_BETTER):
        return "higher"
    return "lower" if name.endswith(TIME_SUFFIX) else None


SPEED_PARTS = ("seconds", "latency", "_per_s", "mfu")
"""Parts of a name that make it a time or a throughput (with a name ending in TIME_SUFFIX)."""


def is_speed(metric: str) -> bool:
    """Whether `metric` measures speed (a time, a throughput, MFU) rather than what a model does: its value
    moves with the machine's load from one run of the same config to the next, so `runs compare` gates it
    only when asked for by name."""
    name = metric.lower().rsplit(".", 1)[-1]
    return any(part in name for part in SPEED_PARTS) or name.endswith(TIME_SUFFIX)
