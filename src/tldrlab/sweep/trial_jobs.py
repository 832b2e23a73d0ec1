"""The execute functions of sweep trial runs (`RunKind.trial_execute` of `train`, and kind `trial`): the
program's recipe with the study's pruning, its outcome settled where the sweep reads it.

They live apart from the trial registry (`tldrlab.sweep.trials`) because they train: the registry is what a
sweep's coordinating process (and `tldrlab.service.sweeps`) imports, and it must not load torch; a run
executes these by name ("tldrlab.sweep.trial_jobs:train_trial_job" in `tldrlab.kinds`).
"""

from __future__ import annotations

from typing import Any

import optuna

from tldrlab.errors import InvalidInputError
from tldrlab.experiments.dendrite_experiment import train_arm
from tldrlab.runs.run import Run
from tldrlab.sweep.command import build_command, run_command
from tldrlab.sweep.config import TrialConfig
from tldrlab.sweep.pruning import pruning_hooks
from tldrlab.sweep.spec import parse_sweep
from tldrlab.sweep.trials import experiment_config, settle_trial, trial_link
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


# -- trial runs of other programs: kind `trial` ------------------------------------------------------------
def trial_job(run: Run, config: TrialConfig) -> dict[str, Any]:
    """A run of kind `trial`: a command line (its JSON metric lines feed the pruner) or an experiment arm."""
    link = trial_link(run)
    spec = parse_sweep(config.sweep, source=config.source)
    pruned: optuna.TrialPruned | None = None
    value: float | None = None
    if config.program == "command":
        argv = build_command(spec, config.params, run.dir)
        try:
            run_command(
                argv,
                run,
                link.reporter,
                study_name=str(run.record.tags["study"]),
                trial_number=link.trial.number,
            )
            value = link.reporter.last
            if value is None:
                raise InvalidInputError(
                    f"the program reported no {spec.metric!r}: print JSON lines such as "
                    f'{{"{spec.metric}": 0.5}} (see docs/sweeps.md)'
                )
            run.set_summary(**{spec.metric: value, "iterations": link.reporter.iterations})
        except optuna.TrialPruned as exc:
            pruned = exc
    else:
        experiment, arm, seed = experiment_config(spec, config.params)
        row = train_arm(experiment, arm, seed)
        numbers = {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        run.log_metrics(int(row.get("steps") or 0), **numbers)
        run.set_summary(**numbers, experiment_arm_run=row.get("run_id"))
        if spec.metric not in numbers:
            raise InvalidInputError(
                f"metric.name {spec.metric!r} is not in the arm's results; have: {sorted(numbers)}"
            )
        value = float(numbers[spec.metric])
        link.reporter.report(value, 1, final=True)
    return settle_trial(run, link, value, pruned)
