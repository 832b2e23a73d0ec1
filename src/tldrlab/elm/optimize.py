"""`tldrlab elm optimize`: a Bayesian search of the ELM adapter's settings on the Sweeps engine.

    summary = optimize_elm(ElmTrainConfig(data="data/elm"), trials=20, jobs=2)

The search space is written as a W&B sweep (`tldrlab.elm.search`: SEARCH_SPACE, program `tldrlab.elm`, the
base config as its `config`: `elm_sweep_config`; torch-free, as the sweep service imports it) and runs as
the `elm_optimize` run kind on the Sweeps engine itself: its parser, study storage (SQLite under the home by
default, PostgreSQL by URL), TPE sampler, median pruner (warm-up: no pruning before `warmup` evaluations), and
trials as queued `elm_train` runs of the worker system (`elm_trial_job`: evaluations feed the pruner; the
objective is the best `bertscore_composite` of the trial). Running the same command again resumes the study:
finished trials are kept, interrupted trial runs resume from their checkpoints. `jobs` > 1 runs that many
worker processes.
"""

from __future__ import annotations

from typing import Any

import optuna

from tldrlab.elm.config import ElmOptimizeConfig, ElmTrainConfig
from tldrlab.elm.prepare import load_split
from tldrlab.elm.search import OBJECTIVE
from tldrlab.elm.train import run_elm_training
from tldrlab.errors import InvalidInputError
from tldrlab.launch import launch_run
from tldrlab.runs import Run
from tldrlab.sweep.reporter import Reporter
from tldrlab.sweep.spec import apply_overrides
from tldrlab.sweep.trials import settle_trial, trial_config_of, trial_link
from tldrlab.train.loop import EvalDecision, TrainHooks, TrainState


def check_optimize_data(config: ElmOptimizeConfig) -> None:
    """Kind `elm_optimize`'s command-line check: the prepared data the trials train on is here and sound (the
    run checks it again first), so a missing layout leaves no failed run behind."""
    load_split(config.base.data, "train")


def trial_config(base: dict[str, Any], params: dict[str, Any]) -> ElmTrainConfig:
    """The trial's training config: base + parameters, validated as `tldrlab elm train` validates it (a
    `train` section given in part keeps ELM's loop defaults); the best checkpoint follows the objective."""
    raw = apply_overrides(base, params)
    raw.setdefault("train", {}).update(best_metric=OBJECTIVE, best_mode="max")
    raw["use_bertscore"] = True
    config: ElmTrainConfig = trial_config_of("elm_train", raw, "ELM training config")
    return config


def elm_pruning_hooks(reporter: Reporter) -> TrainHooks:
    """Each evaluation's objective reported at iteration = evaluation number; the reporter prunes."""

    class Hooks(TrainHooks):
        evaluations = 0

        def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
            self.evaluations += 1
            reporter.report(metrics[OBJECTIVE], self.evaluations)
            return None

    return Hooks()


def check_elm(spec: Any, params: dict[str, Any]) -> None:
    """Before any trial: the base config with these parameters is a valid ElmTrainConfig."""
    trial_config(spec.config, params)


def elm_trial_config(spec: Any, params: dict[str, Any]) -> ElmTrainConfig:
    """A trial's config (TRIAL_PROGRAMS["elm"]): the sweep's base config with the parameters applied."""
    return trial_config(spec.config, params)


def elm_trial_job(run: Run, config: ElmTrainConfig) -> dict[str, Any]:
    """An `elm_train` run that is a sweep trial: the ELM recipe, each evaluation's objective fed to the
    pruner; the value is the best objective the run measured."""
    link = trial_link(run)
    pruned: optuna.TrialPruned | None = None
    best: float | None = None
    try:
        result = run_elm_training(run, config, hooks=elm_pruning_hooks(link.reporter))
        best = None if result.best_value is None else float(result.best_value)
    except optuna.TrialPruned as exc:
        pruned = exc
    return settle_trial(run, link, best, pruned)


def optimize_elm(
    base: ElmTrainConfig,
    *,
    trials: int = 20,
    jobs: int = 1,
    storage: str | None = None,
    study_name: str = "elm-summary-optimization",
    warmup: int = 2,
    seed: int | None = 0,
    hidden_dims: list[int] | None = None,
    quiet: bool = False,
    echo: Any = print,
) -> dict[str, Any]:
    """Run (or resume) the study to `trials` finished trials as an `elm_optimize` run; returns the best
    trial and the state counts."""
    if trials < 1 or jobs < 1:
        raise InvalidInputError(f"--trials and --jobs must be >= 1; got {trials} and {jobs}")
    load_split(base.data, "train")  # a missing or broken data directory fails before any study exists
    config = ElmOptimizeConfig(
        base=base, trials=trials, jobs=jobs, storage=storage, study=study_name, warmup=warmup, seed=seed,
        hidden_dims=hidden_dims, quiet=quiet,
    )  # fmt: skip
    summary: dict[str, Any] = (
        launch_run("elm_optimize", config, tags={"study": study_name}, echo=echo).result or {}
    )
    return summary
