"""One trial = one tldrlab run: `TRIAL_PROGRAMS[spec.kind](spec, trial, params, ctx) -> metric value`.

- train: `tldrlab train`'s TrainJobConfig from the sweep's `config`, dotted keys overridden by the parameters
  (`train.lr`, `model_settings.dropout_rate`); the run is a "train" run. Each evaluation is reported to
  Optuna at iteration ceil(step / eval_every) (W&B's "iteration" = the n-th time the metric is logged), and a
  trial the pruner stops ends after that evaluation. A retried trial (its worker died) resumes the dead
  trial's run from its last checkpoint.
- experiment: the dendrite experiment's ExperimentConfig; the parameters `arm` and `seed` pick what
  `train_arm(config, arm, seed)` trains; the metric is read from the arm's results row (no pruning).
- elm: the ELM summary adapter's ElmTrainConfig (`tldrlab elm optimize` builds this sweep); see
  `tldrlab.elm.optimize.elm_trial`.
- lvm: an LVM training's LVMTrainJobConfig; each trial is an `lvm_train` run (see `tldrlab.lvm.sweep`).
- command: a command line (W&B macros) run as a subprocess; see `tldrlab.sweep.command`.

The value of a trial is the metric's last reported value (W&B's default summary of a logged metric).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from pydantic import BaseModel, ValidationError

from tldrlab.errors import ConfigError, InvalidInputError
from tldrlab.runs.run import Run
from tldrlab.sweep.spec import SweepSpec
from tldrlab.sweep.storage import RUN_ATTR


@dataclass
class TrialContext:
    """What every trial of one worker shares."""

    study_name: str
    """Optuna study name (also the W&B group and the runs' `study` tag)."""
    parent_id: str | None
    """The sweep run this worker reports to."""
    quiet: bool = False
    """No progress bars inside trials."""


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


def apply_overrides(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with every dotted parameter name set to its value."""
    import copy

    out = copy.deepcopy(base)
    for name, value in params.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"parameters.{name}: {part!r} is a {type(child).__name__} in config, not a section"
                )
            node = child
        node[leaf] = value
    return out


def _validate(model: type[BaseModel], raw: dict[str, Any], what: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"the sweep's config + parameters are not a valid {what}: {problems}") from exc


def _tags(ctx: TrialContext, trial: optuna.Trial) -> dict[str, Any]:
    return {"study": ctx.study_name, "trial": trial.number}


def _retried_run_id(trial: optuna.Trial) -> str | None:
    """The run of the trial this one re-runs (copied into user_attrs by the retry), if any."""
    system_attrs = trial.study._storage.get_trial_system_attrs(trial._trial_id)
    if "failed_trial" not in system_attrs:
        return None
    run_id = trial.user_attrs.get(RUN_ATTR)
    return run_id if isinstance(run_id, str) else None


# -- program: tldrlab.train ----------------------------------------------------------------------------------
def pruning_hooks(reporter: Reporter, eval_every: int, max_steps: int) -> Any:
    """TrainHooks feeding each evaluation's metric to the pruner (optuna.TrialPruned propagates out of train).

    Built in a function so that command-line sweeps never import torch.
    """
    from tldrlab.train.loop import EvalDecision, TrainHooks, TrainState

    class PruningHooks(TrainHooks):
        def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
            iteration = math.ceil(state.step / eval_every) if eval_every else 1
            reporter.report(metrics[reporter.metric], iteration, final=state.step >= max_steps)
            return None

    return PruningHooks()


def train_job_config(spec: SweepSpec, params: dict[str, Any]) -> Any:
    """The TrainJobConfig of a trial: base config + parameters; best checkpoint follows the sweep metric."""
    from tldrlab.train.config import TrainJobConfig

    raw = apply_overrides(spec.config, params)
    train = raw.setdefault("train", {})
    if not isinstance(train, dict):
        raise ConfigError("config.train: must be a mapping of loop settings")
    train.setdefault("best_metric", spec.metric)
    train.setdefault("best_mode", "max" if spec.goal == "maximize" else "min")
    return _validate(TrainJobConfig, raw, "training config (tldrlab train)")


def check_train(spec: SweepSpec, params: dict[str, Any]) -> None:
    from pathlib import Path

    from tldrlab.models.registry import model_task, parse_model_config

    if "data" not in spec.config:
        raise ConfigError("config.data: required by program tldrlab.train (data: {path: ...})")
    job = train_job_config(spec, params)
    model_task(job.model)
    if "from_pretrained" not in job.model_settings:
        parse_model_config(job.model, job.model_settings)
    if not Path(job.data.path).exists():
        raise InvalidInputError(f"config.data.path: not found: {job.data.path}")


def share_tokenizer(spec: SweepSpec, study_name: str) -> str | None:
    """Train the sweep's tokenizer once (not once per trial) and point the base config at it.

    Skipped when the config names a tokenizer or a parameter changes the tokenizer or the data. Returns the
    tokenizer directory (<home>/sweeps/<study>/tokenizer) or None.
    """
    from tldrlab.config import get_settings
    from tldrlab.tokenizers import train_tokenizer
    from tldrlab.train.tasks import training_files

    if any(name.startswith(("tokenizer.", "data.")) for name in spec.parameters):
        return None
    job = train_job_config(spec, {})
    if job.tokenizer.path:
        return None
    out = get_settings().ensure_home() / "sweeps" / study_name / "tokenizer"
    if not (out / "tokenizer.json").is_file():
        files = training_files(job.data)
        train_tokenizer(job.tokenizer.method, files, job.tokenizer.vocab_size, out, seed=job.train.seed)
    spec.config = apply_overrides(spec.config, {"tokenizer.path": str(out)})
    spec.raw = {**spec.raw, "config": spec.config}
    return str(out)


def _train_in_run(run: Run, job: Any, hooks: Any, ctx: TrialContext) -> Any:
    """The train recipe with the sweep's pruning hooks, grouped by study in W&B."""
    from tldrlab.train.jobs import TRAIN
    from tldrlab.train.recipe import run_recipe

    return run_recipe(
        run,
        TRAIN,
        job,
        resume=True,
        extra_hooks=[hooks],
        clean_exits=(optuna.TrialPruned,),
        wandb_group=ctx.study_name,
        wandb_config=_tags_of(run),
    ).train


def _tags_of(run: Run) -> dict[str, Any]:
    return {f"sweep_{k}": v for k, v in run.record.tags.items()}


def _without_progress(config: dict[str, Any]) -> dict[str, Any]:
    """A job config minus the console-only setting (--quiet may differ between a run and its resume)."""
    return {**config, "train": {k: v for k, v in config.get("train", {}).items() if k != "progress"}}


def train_trial(spec: SweepSpec, trial: optuna.Trial, params: dict[str, Any], ctx: TrialContext) -> float:
    from tldrlab.runs import create_run, execute_run, open_registry
    from tldrlab.runs.registry import RunStatus

    job = train_job_config(spec, params)
    if ctx.quiet:
        job.train.progress = False
    registry = open_registry()
    run_id = _retried_run_id(trial)
    if run_id is not None:
        try:
            record = registry.get(run_id)
            if (
                record.kind != "train"
                or record.status == RunStatus.COMPLETED
                or _without_progress(record.config) != _without_progress(job.model_dump(mode="json"))
            ):
                run_id = None
        except Exception:  # the run lives on another machine's home
            run_id = None
    if run_id is None:
        run_id = create_run(
            "train",
            job,
            seed=job.train.seed,
            parent_id=ctx.parent_id,
            tags=_tags(ctx, trial),
            registry=registry,
        ).id
    trial.set_user_attr(RUN_ATTR, run_id)
    reporter = Reporter(trial, spec.metric)
    pruned: optuna.TrialPruned | None = None
    with execute_run(run_id, registry=registry) as run:
        run.set_environment(study=ctx.study_name, trial=trial.number, sweep_params=params)
        try:
            result = _train_in_run(
                run, job, pruning_hooks(reporter, job.train.eval_every, job.train.max_steps), ctx
            )
        except optuna.TrialPruned as exc:
            pruned = exc
            run.set_summary(pruned=True, pruned_at_iteration=reporter.iterations)
            run.log(str(exc))
    if pruned is not None:
        raise pruned
    value = result.metrics.get(spec.metric)
    if value is None:
        raise InvalidInputError(
            f"metric.name {spec.metric!r} is not among the evaluation metrics {sorted(result.metrics)}"
        )
    return float(value)


# -- program: tldrlab.experiment -----------------------------------------------------------------------------
EXPERIMENT_KEYS = ("arm", "seed")
"""Parameters of the experiment program that pick what `train_arm` trains (not ExperimentConfig fields)."""


def experiment_config(spec: SweepSpec, params: dict[str, Any]) -> tuple[Any, str, int]:
    from tldrlab.experiments.dendrite_experiment import ExperimentConfig

    raw = apply_overrides(spec.config, params)
    arm = str(raw.pop("arm", "compressed_pai"))
    seed = raw.pop("seed", 1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"parameters.seed: must be an integer; got {seed!r}")
    return _validate(ExperimentConfig, raw, "dendrite experiment config"), arm, seed


def check_experiment(spec: SweepSpec, params: dict[str, Any]) -> None:
    from pathlib import Path

    from tldrlab.experiments.dendrite_experiment import ARMS

    config, arm, _ = experiment_config(spec, params)
    if not Path(config.data).exists():
        raise InvalidInputError(f"config.data: not found: {config.data}")
    if arm not in ARMS:
        raise ConfigError(f"parameters.arm: unknown arm {arm!r}; allowed: {', '.join(ARMS)}")


def experiment_trial(
    spec: SweepSpec, trial: optuna.Trial, params: dict[str, Any], ctx: TrialContext
) -> float:
    from tldrlab.experiments.dendrite_experiment import train_arm
    from tldrlab.runs import start_run

    config, arm, seed = experiment_config(spec, params)
    trial_config = {
        "program": "tldrlab.experiment",
        "arm": arm,
        "seed": seed,
        "config": config.model_dump(mode="json"),
    }
    with start_run("trial", trial_config, seed=seed, parent_id=ctx.parent_id, tags=_tags(ctx, trial)) as run:
        trial.set_user_attr(RUN_ATTR, run.id)
        run.set_environment(study=ctx.study_name, trial=trial.number, sweep_params=params)
        row = train_arm(config, arm, seed)
        numbers = {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        run.log_metrics(int(row.get("steps") or 0), **numbers)
        run.set_summary(**numbers, experiment_arm_run=row.get("run_id"))
        if spec.metric not in numbers:
            raise InvalidInputError(
                f"metric.name {spec.metric!r} is not in the arm's results; have: {sorted(numbers)}"
            )
        value = float(numbers[spec.metric])
        Reporter(trial, spec.metric).report(value, 1, final=True)
    return value


# -- program: a command line ---------------------------------------------------------------------------------
def command_trial(spec: SweepSpec, trial: optuna.Trial, params: dict[str, Any], ctx: TrialContext) -> float:
    from tldrlab.runs import start_run
    from tldrlab.sweep.command import build_command, run_command

    with start_run("trial", {"program": spec.program, "command": spec.command, "params": params},
                   parent_id=ctx.parent_id, tags=_tags(ctx, trial)) as run:  # fmt: skip
        trial.set_user_attr(RUN_ATTR, run.id)
        run.set_environment(study=ctx.study_name, trial=trial.number, sweep_params=params)
        argv = build_command(spec, params, run.dir)
        reporter = Reporter(trial, spec.metric)
        pruned: optuna.TrialPruned | None = None
        try:
            run_command(argv, run, reporter, study_name=ctx.study_name, trial_number=trial.number)
        except optuna.TrialPruned as exc:
            pruned = exc
            run.set_summary(pruned=True, pruned_at_iteration=reporter.iterations)
            run.log(str(exc))
        else:
            if reporter.last is None:
                raise InvalidInputError(
                    f"the program reported no {spec.metric!r}: print JSON lines such as "
                    f'{{"{spec.metric}": 0.5}} (see docs/sweeps.md)'
                )
            run.set_summary(**{spec.metric: reporter.last, "iterations": reporter.iterations})
    if pruned is not None:
        raise pruned
    assert reporter.last is not None
    return reporter.last


def elm_trial(spec: SweepSpec, trial: optuna.Trial, params: dict[str, Any], ctx: TrialContext) -> float:
    from tldrlab.elm.optimize import elm_trial as run_elm_trial

    return run_elm_trial(spec, trial, params, ctx)


def check_elm(spec: SweepSpec, params: dict[str, Any]) -> None:
    from tldrlab.elm.optimize import check_elm as check

    check(spec, params)


def lvm_trial(spec: SweepSpec, trial: optuna.Trial, params: dict[str, Any], ctx: TrialContext) -> float:
    from tldrlab.lvm.sweep import lvm_trial as run_lvm_trial

    return run_lvm_trial(spec, trial, params, ctx)


def check_lvm(spec: SweepSpec, params: dict[str, Any]) -> None:
    from tldrlab.lvm.sweep import check_lvm as check

    check(spec, params)


TRIAL_PROGRAMS: dict[str, Callable[[SweepSpec, optuna.Trial, dict[str, Any], TrialContext], float]] = {
    "train": train_trial,
    "experiment": experiment_trial,
    "elm": elm_trial,
    "lvm": lvm_trial,
    "command": command_trial,
}
"""spec.kind -> how one trial runs."""

PROGRAM_CHECKS: dict[str, Callable[[SweepSpec, dict[str, Any]], None]] = {
    "train": check_train,
    "experiment": check_experiment,
    "elm": check_elm,
    "lvm": check_lvm,
    "command": lambda spec, params: None,
}
"""spec.kind -> validation of the config + parameters before any trial starts."""
