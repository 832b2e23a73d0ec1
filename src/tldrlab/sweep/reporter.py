"""Reporting a trial's evaluations to its study.

`Reporter(trial, metric, storage_url)` sends each value to Optuna (through the study's storage, so it works
in whatever process the trial run executes) and raises optuna.TrialPruned when the study's pruner says so; a
write the system refuses there is one line naming the study's database (`refused_study_writes`). It is apart
from the training loop's hooks (`tldrlab.sweep.pruning`) so that the trial registry, which every sweep
process imports, loads no torch.
"""

from __future__ import annotations

import optuna

from tldrlab.sweep.storage import refused_study_writes


class Reporter:
    """Reports intermediate values to Optuna and raises TrialPruned when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str, storage_url: str = "") -> None:
        self.trial = trial
        self.metric = metric
        self.storage_url = storage_url
        self.last: float | None = None
        self.iterations = 0

    def report(self, value: float, iteration: int, *, final: bool = False) -> None:
        """Report one evaluation; `final` (the last one of a training) is never pruned: nothing to save."""
        self.last = float(value)
        self.iterations = max(self.iterations, iteration)
        with refused_study_writes(self.storage_url):
            self.trial.report(self.last, iteration)
            prune = not final and self.trial.should_prune()
        if prune:
            raise optuna.TrialPruned(f"pruned at iteration {iteration}: {self.metric}={self.last:.4g}")
