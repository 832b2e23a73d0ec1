"""Reporting a trial's evaluations to its study, and pruning: what a trial run adds to its program's loop.

`Reporter(trial, metric)` sends each value to Optuna (through the study's storage, so it works in whatever
process the trial run executes) and raises optuna.TrialPruned when the study's pruner says so;
`pruning_hooks` wires it into the training loop's evaluations.
"""

from __future__ import annotations

import math

import optuna

from tldrlab.train.loop import EvalDecision, TrainHooks, TrainState


class Reporter:
    """Reports intermediate values to Optuna and raises TrialPruned when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.last: float | None = None
        self.iterations = 0

    def report(self, value: float, iteration: int, *, final: bool = False) -> None:
        """Report one evaluation; `final` (the last one of a training) is never pruned: nothing to save."""
        self.last = float(value)
        self.iterations = max(self.iterations, iteration)
        self.trial.report(self.last, iteration)
        if not final and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at iteration {iteration}: {self.metric}={self.last:.4g}")


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
