"""Pruning in the training loop: what a trial run adds to its program's loop.

`pruning_hooks` wires a `Reporter` (`tldrlab.sweep.reporter`) into the training loop's evaluations.
"""

from __future__ import annotations

import math

from tldrlab.sweep.reporter import Reporter
from tldrlab.train.loop import EvalDecision, TrainHooks, TrainState


class PruningHooks(TrainHooks):
    """Each evaluation's metric to the pruner at iteration ceil(step / eval_every) (W&B's "iteration": the
    n-th time the metric is logged, also after a resume); the last evaluation is never pruned."""

    def __init__(self, reporter: Reporter, eval_every: int, max_steps: int) -> None:
        self.reporter = reporter
        self.eval_every = eval_every
        self.max_steps = max_steps

    def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
        if self.reporter.metric not in metrics:
            return None  # an occasional metric (seq2seq ROUGE every `generate_every` evaluations)
        iteration = math.ceil(state.step / self.eval_every) if self.eval_every else 1
        self.reporter.report(metrics[self.reporter.metric], iteration, final=state.step >= self.max_steps)
        return None


def pruning_hooks(reporter: Reporter, eval_every: int, max_steps: int) -> TrainHooks:
    """TrainHooks feeding each evaluation's metric to the pruner (optuna.TrialPruned propagates out of the
    loop after that evaluation)."""
    return PruningHooks(reporter, eval_every, max_steps)
