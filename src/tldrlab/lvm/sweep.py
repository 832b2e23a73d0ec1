"""`program: tldrlab.lvm` for the Sweeps engine: each trial is one `lvm_train` run (executed as a trial by
`lvm_trial_job`).

The sweep's `config` is an LVMTrainJobConfig (`sequences`, `model`, `model_settings`, `loss`, `train`, ...);
every parameter overrides a dotted key (`train.lr`, `model_settings.hidden`, `temperature`). The kept
checkpoint follows the sweep's metric (`train.best_metric` / `best_mode` default to it), every evaluation
(`eval_loss`, `val_cosine`, `val_mse`, `val_top1_excl`) is reported to the pruner, and the trial's value is
the metric's last reported value, as for `tldrlab.train`. Runs are grouped in W&B by study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from tldrlab.errors import InvalidInputError
from tldrlab.lvm.sequences import splits_with_sequences
from tldrlab.lvm.training import LVMTrainJobConfig, train_lvm
from tldrlab.runs import Run
from tldrlab.sweep.pruning import pruning_hooks
from tldrlab.sweep.spec import apply_overrides, best_follows_metric
from tldrlab.sweep.trials import settle_trial, trial_config_of, trial_link


def lvm_job_config(spec: Any, params: dict[str, Any]) -> LVMTrainJobConfig:
    """The trial's LVMTrainJobConfig: the sweep's config with the parameters applied, validated as `tldrlab
    lvm train` validates it (a `train` section given in part keeps LVM's loop defaults, warm-up included)."""
    raw = best_follows_metric(apply_overrides(spec.config, params), spec)
    config: LVMTrainJobConfig = trial_config_of("lvm_train", raw, "LVM training config")
    return config


def check_lvm(spec: Any, params: dict[str, Any]) -> None:
    """Before any trial: a valid config (LVMTrainJobConfig refuses an unknown model or loss, bad settings and
    a model over the parameter budget) and an existing sequences file that is a sequences NPZ (every trial
    would fail reading an empty or truncated one)."""
    job = lvm_job_config(spec, params)
    if not Path(job.sequences).exists():
        raise InvalidInputError(f"config.sequences: not found: {job.sequences} (run `tldrlab lvm sequences`)")
    splits_with_sequences(job.sequences)


def lvm_trial_job(run: Run, config: LVMTrainJobConfig) -> dict[str, Any]:
    """An `lvm_train` run that is a sweep trial: the LVM recipe plus pruning; the value is the metric's last
    reported value."""
    link = trial_link(run)
    hooks = pruning_hooks(link.reporter, config.train.eval_every, config.train.max_steps)
    pruned: optuna.TrialPruned | None = None
    try:
        train_lvm(config, run, hooks=hooks)
    except optuna.TrialPruned as exc:
        pruned = exc
    return settle_trial(run, link, link.reporter.last, pruned)
