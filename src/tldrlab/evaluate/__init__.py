"""Evaluation, generation and scoring of tldrlab models.

- `config`: GenerateOptions, EvalConfig and the configs of the evaluate / generate / score run kinds (no
  torch: importing `tldrlab.evaluate` or its configs stays cheap; the functions below load on first use).
- `metrics`: rouge_scores, bertscore (offline MiniLM), length_stats, perplexity, distinct_n.
- `generate`: `generate.generate(model, tokenizer, prompts, options)` (t5, gpt2, char_lstm).
- `score`: `score_text` (loss, perplexity, per-token surprisal, top-k predictions).
- `run_eval`: evaluating a saved model or run on a data split (eval.json + samples.jsonl).
- `launchers`: `evaluate_target` and a training run's final evaluation, both `evaluate` runs.
- `jobs`: what runs of the kinds evaluate, generate and score execute.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tldrlab.evaluate.config import EvalConfig, GenerateOptions

if TYPE_CHECKING:
    from tldrlab.evaluate.launchers import evaluate_target
    from tldrlab.evaluate.metrics import (
        EMPTY_OUTPUT_CAUSE,
        bertscore,
        distinct_n,
        empty_count,
        length_stats,
        perplexity,
        rouge_scores,
    )
    from tldrlab.evaluate.run_eval import evaluate_model
    from tldrlab.evaluate.score import score_text

_LAZY = {
    "EMPTY_OUTPUT_CAUSE": "tldrlab.evaluate.metrics",
    "empty_count": "tldrlab.evaluate.metrics",
    "bertscore": "tldrlab.evaluate.metrics",
    "distinct_n": "tldrlab.evaluate.metrics",
    "length_stats": "tldrlab.evaluate.metrics",
    "perplexity": "tldrlab.evaluate.metrics",
    "rouge_scores": "tldrlab.evaluate.metrics",
    "evaluate_model": "tldrlab.evaluate.run_eval",
    "evaluate_target": "tldrlab.evaluate.launchers",
    "score_text": "tldrlab.evaluate.score",
}


def __getattr__(name: str) -> Any:
    """The torch-backed functions, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "EMPTY_OUTPUT_CAUSE",
    "EvalConfig",
    "GenerateOptions",
    "bertscore",
    "distinct_n",
    "empty_count",
    "evaluate_model",
    "evaluate_target",
    "length_stats",
    "perplexity",
    "rouge_scores",
    "score_text",
]
