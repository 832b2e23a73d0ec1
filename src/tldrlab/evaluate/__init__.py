"""Evaluation, generation and scoring of tldrlab models.

- `metrics`: rouge_scores, bertscore (offline MiniLM), length_stats, perplexity, distinct_n.
- `generate`: GenerateOptions and `generate` (t5, gpt2, char_lstm).
- `score`: `score_text` (loss, perplexity, per-token surprisal, top-k predictions).
- `run_eval`: evaluating a saved model or run on a data split (eval.json + samples.jsonl).
"""

from tldrlab.evaluate.generate import GenerateOptions, generate
from tldrlab.evaluate.metrics import bertscore, distinct_n, length_stats, perplexity, rouge_scores
from tldrlab.evaluate.run_eval import EvalConfig, evaluate_model, evaluate_target
from tldrlab.evaluate.score import score_text

__all__ = [
    "EvalConfig",
    "GenerateOptions",
    "bertscore",
    "distinct_n",
    "evaluate_model",
    "evaluate_target",
    "generate",
    "length_stats",
    "perplexity",
    "rouge_scores",
    "score_text",
]
