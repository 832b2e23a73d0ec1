"""`tldrlab elm optimize`: seed 002's Bayesian search on the Sweeps engine (tldrlab.sweep).

    summary = optimize_elm(ElmTrainConfig(data="data/elm"), trials=20, jobs=2)

The search space is written as a W&B sweep (SEARCH_SPACE, program `tldrlab.elm`, the base config as its
`config`) and runs on the Sweeps engine itself: its parser, study storage (SQLite under the home by default,
PostgreSQL by URL), TPE sampler, median pruner (warm-up: no pruning before `warmup` evaluations), worker loop
and worker processes (dead-worker reconciliation, retries), and report helpers; `elm_trial` is the engine's
trial program for `tldrlab.elm`. Each trial is one
`elm_train` run (2 epochs by default) whose evaluations feed the pruner; the objective is the best
`bertscore_composite` of the trial. Running the same command again resumes the study: finished trials are
kept, trials of dead workers are marked FAIL and re-run with their parameters. `jobs` > 1 runs that many
worker processes on the one study.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from tldrlab.elm.config import ElmOptimizeConfig, ElmTrainConfig
from tldrlab.elm.train import parse_elm_config
from tldrlab.errors import InvalidInputError

OBJECTIVE = "bertscore_composite"

SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "train.lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 5e-3},
    "model.hidden_dim": {"values": [128, 256, 512]},
    "model.dropout": {"distribution": "uniform", "min": 0.0, "max": 0.3},
    "model.residual_scale": {"distribution": "uniform", "min": 0.05, "max": 0.5},
    "loss.contrastive_weight": {"distribution": "uniform", "min": 0.0, "max": 0.1},
    "loss.text_drift_weight": {"distribution": "uniform", "min": 0.01, "max": 0.1},
    "loss.text_drift_target_similarity": {"distribution": "uniform", "min": 0.7, "max": 0.9},
    "train.batch_size": {"values": [4, 8, 16]},
}
"""Seed 002's search space in W&B syntax. hidden_dim is scaled down from the seed's [2048, 4096, 6144]
(a 2560-d embedder feeding a 4B LM) to this CPU scale; `--hidden-dims` sets other choices."""

BASE_ATTR = "elm_base_config"
"""study.user_attrs key: the base ElmTrainConfig every trial overrides (workers rebuild trials from it)."""


def sweep_mapping(
    study_name: str, *, warmup: int = 2, seed: int | None = 0, hidden_dims: list[int] | None = None
) -> dict[str, Any]:
    """The W&B sweep equivalent of the search (what the Sweeps engine parses and stores with the study)."""
    parameters = {k: dict(v) for k, v in SEARCH_SPACE.items()}
    if hidden_dims:
        parameters["model.hidden_dim"] = {"values": list(hidden_dims)}
    return {
        "name": study_name,
        "program": "tldrlab.elm",
        "method": "bayes",
        "metric": {"name": OBJECTIVE, "goal": "maximize"},
        "parameters": parameters,
        "early_terminate": {"type": "median", "min_iter": warmup, "n_startup_trials": 2},
        "seed": seed,
    }


def trial_config(base: dict[str, Any], params: dict[str, Any]) -> ElmTrainConfig:
    """The trial's training config: base + parameters; the best checkpoint follows the objective."""
    from tldrlab.sweep.trials import apply_overrides

    raw = apply_overrides(base, params)
    raw.setdefault("train", {}).update(best_metric=OBJECTIVE, best_mode="max")
    raw["use_bertscore"] = True
    return parse_elm_config(raw)


def _pruning_hooks(trial: optuna.Trial) -> Any:
    """Report each evaluation's objective at iteration = evaluation number; the Sweeps Reporter prunes."""
    from tldrlab.sweep.trials import Reporter
    from tldrlab.train.loop import EvalDecision, TrainHooks, TrainState

    reporter = Reporter(trial, OBJECTIVE)

    class Hooks(TrainHooks):
        evaluations = 0

        def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
            self.evaluations += 1
            reporter.report(metrics[OBJECTIVE], self.evaluations)
            return None

    return Hooks()


def elm_trial(spec: Any, trial: optuna.Trial, params: dict[str, Any], ctx: Any) -> float:
    """The Sweeps engine's trial program for `tldrlab.elm`: one `elm_train` run of the base config (the
    sweep's `config`) with the trial's parameters; its evaluations feed the pruner."""
    from tldrlab.elm.train import run_elm_training
    from tldrlab.runs import start_run
    from tldrlab.sweep.storage import RUN_ATTR

    config = trial_config(spec.config, params)
    if ctx.quiet:
        config.train.progress = False
    tags = {"study": ctx.study_name, "trial": trial.number}
    pruned: optuna.TrialPruned | None = None
    with start_run("elm_train", config, seed=config.train.seed, parent_id=ctx.parent_id, tags=tags) as run:
        trial.set_user_attr(RUN_ATTR, run.id)
        run.set_environment(study=ctx.study_name, trial=trial.number, sweep_params=params)
        try:
            result = run_elm_training(run, config, hooks=_pruning_hooks(trial), resume=False)
        except optuna.TrialPruned as exc:
            pruned = exc
            run.set_summary(pruned=True)
            run.log(str(exc))
    if pruned is not None:
        raise pruned
    if result.best_value is None:
        raise InvalidInputError(f"trial {trial.number}: no {OBJECTIVE} was measured")
    return float(result.best_value)


def check_elm(spec: Any, params: dict[str, Any]) -> None:
    """Before any trial: the base config with these parameters is a valid ElmTrainConfig."""
    trial_config(spec.config, params)


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
    from tldrlab.elm.prepare import load_split
    from tldrlab.runs import start_run

    if trials < 1 or jobs < 1:
        raise InvalidInputError(f"--trials and --jobs must be >= 1; got {trials} and {jobs}")
    load_split(base.data, "train")  # a missing or broken data directory fails before any study exists
    config = ElmOptimizeConfig(
        base=base, trials=trials, jobs=jobs, storage=storage, study=study_name, warmup=warmup, seed=seed,
        hidden_dims=hidden_dims, quiet=quiet,
    )  # fmt: skip
    with start_run("elm_optimize", config, tags={"study": study_name}) as run:
        return optimize_in_run(run, config, echo=echo)


def optimize_in_run(run: Any, config: ElmOptimizeConfig, *, echo: Any = print) -> dict[str, Any]:
    """The study's trials as children of `run` (kind `elm_optimize`); returns the best trial and counts."""
    from tldrlab.elm.prepare import load_split
    from tldrlab.sweep.report import best_trial_summary
    from tldrlab.sweep.runner import (
        FINISHED,
        open_study,
        quiet_optuna,
        run_workers,
        state_counts,
        worker_loop,
    )
    from tldrlab.sweep.spec import parse_sweep
    from tldrlab.sweep.storage import open_storage, redact, resolve_storage_url

    study_name, trials, jobs = config.study, config.trials, config.jobs
    load_split(config.base.data, "train")
    quiet_optuna()
    raw = sweep_mapping(study_name, warmup=config.warmup, seed=config.seed, hidden_dims=config.hidden_dims)
    spec = parse_sweep(raw)
    spec.raw = raw
    url = resolve_storage_url(config.storage)
    study = open_study(spec, url, study_name)
    base_raw = config.base.model_dump(mode="json")
    if BASE_ATTR not in study.user_attrs:
        study.set_user_attr(BASE_ATTR, base_raw)
    base_raw = study.user_attrs[BASE_ATTR]  # a resumed study keeps the base it started with
    raw = {**raw, "config": base_raw}  # what the trials (and spawned workers) build their runs from
    spec = parse_sweep(raw)
    spec.raw = raw
    done = sum(state_counts(study)[s] for s in FINISHED)
    echo(
        f"study {study_name!r} in {redact(url)}: TPE over {len(spec.parameters)} parameters, "
        f"{done}/{trials} trials finished"
    )
    run.set_environment(study=study_name, storage=redact(url), sweep=raw)
    if jobs == 1:
        worker_loop(spec, url, study_name, trials, parent_id=run.id, quiet=config.quiet, echo=echo)
    else:
        codes = run_workers(spec, url, study_name, trials, jobs, run.id, quiet=True)
        if any(codes):
            raise InvalidInputError(f"optimisation workers exited with codes {codes}; see their output above")
    study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    counts = state_counts(study)
    summary: dict[str, Any] = {
        "study": study_name,
        "storage": redact(url),
        "run_id": run.id,
        "trials": {state.name: counts[state] for state in TrialState if counts[state]},
    }
    best = best_trial_summary(study)
    if best is not None:
        summary["best"] = best
        run.set_summary(best_value=best["value"], best_trial=best["number"])
    return summary
