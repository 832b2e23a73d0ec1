"""A `train` run that is a sweep trial (`RunKind.trial_execute` of `train`): the train recipe with the
study's pruning, its outcome settled where the sweep reads it.

It lives apart from the trial registry (`tldrlab.sweep.trials`) because it trains: the registry is what a
sweep's coordinating process (and `tldrlab.service.sweeps`) imports, and it must not load torch; a run
executes it by name ("tldrlab.sweep.trial_jobs:train_trial_job" in `tldrlab.kinds`).
"""

from __future__ import annotations

from typing import Any

import optuna

from tldrlab.runs.run import Run
from tldrlab.sweep.pruning import pruning_hooks
from tldrlab.sweep.trials import settle_trial, trial_link
from tldrlab.train.config import TrainJobConfig
from tldrlab.train.jobs import TRAIN
from tldrlab.train.recipe import run_recipe


def _tags_of(run: Run) -> dict[str, Any]:
    return {f"sweep_{k}": v for k, v in run.record.tags.items()}


# -- trial runs of tldrlab programs: the program's recipe plus pruning hooks -------------------------------
def train_trial_job(run: Run, job: TrainJobConfig) -> dict[str, Any]:
    """A `train` run that is a sweep trial: the train recipe, its evaluations fed to the pruner; the value
    is the metric's last reported value."""
    link = trial_link(run)
    hooks = pruning_hooks(link.reporter, job.train.eval_every, job.train.max_steps)
    pruned: optuna.TrialPruned | None = None
    try:
        run_recipe(
            run,
            TRAIN,
            job,
            extra_hooks=[hooks],
            clean_exits=(optuna.TrialPruned,),
            wandb_group=str(run.record.tags["study"]),
            wandb_config=_tags_of(run),
        )
    except optuna.TrialPruned as exc:
        pruned = exc
    return settle_trial(run, link, link.reporter.last, pruned)
