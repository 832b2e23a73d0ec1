"""Reporting a trial's evaluations to its study.

`Reporter(trial, metric)` sends each value to Optuna (through the study's storage, so it works in whatever
process the trial run executes) and raises optuna.TrialPruned when the study's pruner says so. It is apart
from the training loop's hooks (`tldrlab.sweep.pruning`) so that the trial registry, which every sweep
process imports, loads no torch.
"""

from __future__ import annotations

import optuna


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
