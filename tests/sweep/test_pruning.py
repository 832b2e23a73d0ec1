"""What a trial's training loop reports to its study: one value per evaluation, numbered by evaluation,
and a pruner that may stop any evaluation but the last (a real in-memory Optuna study)."""

from __future__ import annotations

import optuna
import pytest

from tldrlab.sweep.pruning import pruning_hooks
from tldrlab.sweep.reporter import Reporter
from tldrlab.train.loop import TrainState


def test_the_last_evaluation_is_never_pruned_and_iterations_count_evaluations() -> None:
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1.0))
    trial = study.ask()
    hooks = pruning_hooks(Reporter(trial, "eval_loss"), eval_every=5, max_steps=12)
    hooks.on_eval(TrainState(step=5), {"eval_loss": 0.5})
    hooks.on_eval(TrainState(step=12), {"eval_loss": 3.0})  # above the threshold, but the final evaluation
    assert study.trials[0].intermediate_values == {1: 0.5, 3: 3.0}  # step 12 is the 3rd evaluation

    doomed = study.ask()
    hooks = pruning_hooks(Reporter(doomed, "eval_loss"), eval_every=5, max_steps=12)
    with pytest.raises(optuna.TrialPruned, match="iteration 2"):
        hooks.on_eval(TrainState(step=10), {"eval_loss": 3.0})
