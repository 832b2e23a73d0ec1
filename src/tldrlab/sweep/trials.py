"""Sweep trials: each trial is a queued run, executed by the worker system like any other run.

`TRIAL_PROGRAMS[spec.kind]` says what a trial of a sweep program is: the run kind (`train`, `elm_train`,
`lvm_train` for tldrlab programs, `trial` for a command line or an experiment arm), its config (the sweep's
`config` with every dotted parameter applied: `train.lr`, `model_settings.dropout_rate`) and the check made
before any trial starts. The sweep (`tldrlab.sweep.runner`) asks Optuna for a trial, creates its run (tags
`study` and `trial`, parent the sweep run) and hands it to the worker system.

A run tagged as a trial executes as one (`RunKind.trial_execute`: a `train` trial in
`tldrlab.sweep.trial_jobs`, apart from this registry so that a sweep's coordinating process loads no torch;
kind `trial` here): `trial_link` finds its study trial through the study's storage, the program's recipe runs
with pruning hooks (`tldrlab.sweep.pruning`: each evaluation is reported at iteration ceil(step /
eval_every); a pruned trial ends after that evaluation),
and the outcome goes into the run's summary (`sweep_value`, or `pruned`), which the sweep tells Optuna. A
trial whose run was interrupted (a dead worker, a preemption, Ctrl-C) resumes that run from its last
checkpoint.

The value of a trial is the metric's last reported value (W&B's default summary of a logged metric); the ELM
program's is the best objective its run measured.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from pydantic import BaseModel

from tldrlab.choices import unknown_choice
from tldrlab.config import get_settings
from tldrlab.data.splits import training_files
from tldrlab.errors import (
    ConfigError,
    ConflictError,
    InvalidConfigError,
    InvalidInputError,
    TldrlabError,
    listed_problems,
)
from tldrlab.experiments.config import EXPERIMENT_ARMS
from tldrlab.kinds import validate_config
from tldrlab.launch import check_inputs, preflight
from tldrlab.runs import RunRecord, open_registry
from tldrlab.runs.run import Run
from tldrlab.sweep.command import build_command, run_command
from tldrlab.sweep.config import SweepConfig, TrialConfig
from tldrlab.sweep.mapping import PARAMS_ATTR, build_pruner, representative_params
from tldrlab.sweep.reporter import Reporter
from tldrlab.sweep.spec import SweepSpec, apply_overrides, best_follows_metric, parse_sweep, resolve_program
from tldrlab.sweep.storage import (
    RUN_ATTR,
    SPEC_ATTR,
    mark_worker,
    open_storage,
    refused_study_writes,
    resolve_storage_url,
)
from tldrlab.targets import load_target
from tldrlab.tokenizers import tokenizer_once


def trial_config_of(kind: str, raw: dict[str, Any], what: str) -> Any:
    """`raw` (a sweep's config + a trial's parameters) as a config of the run kind `kind`, by the kind's own
    rule (`kinds.validate_config`: a section given in part keeps the rest of the kind's default, e.g. ELM's
    `train` batch size and learning rate), so a trial's config is what the kind's command builds from it.
    ConfigError naming every bad field otherwise."""
    try:
        return validate_config(kind, raw)
    except InvalidConfigError as exc:
        message = f"the sweep's config + parameters are not a valid {what}: {listed_problems(exc)}"
        raise ConfigError(message, errors=exc.details.get("errors")) from None


def train_job_config(spec: SweepSpec, params: dict[str, Any]) -> Any:
    """The TrainJobConfig of a trial: base config + parameters; best checkpoint follows the sweep metric."""
    raw = best_follows_metric(apply_overrides(spec.config, params), spec)
    return trial_config_of("train", raw, "training config (tldrlab train)")


def _shared_tokenizer_job(spec: SweepSpec) -> Any | None:
    """The base training config whose tokenizer the sweep trains once for all its trials; None when the
    trials train no tokenizer (the config names one, or its model brings its own: a pretrained model's) or a
    parameter changes the tokenizer or the data."""
    if any(name.startswith(("tokenizer.", "data.")) for name in spec.parameters):
        return None
    job = train_job_config(spec, {})
    return job if job.trains_tokenizer() else None


def _train_shared_tokenizer(job: Any, out: Path) -> None:
    tokenizer_once(
        out,
        job.tokenizer.method,
        lambda: training_files(job.data.path, job.data.format, job.data.train_split, job.data.val_split),
        job.tokenizer.vocab_size,
        seed=job.train.seed,
        given_as="tokenizer.path in the sweep's config",
    )


def share_tokenizer(spec: SweepSpec, study_name: str) -> str | None:
    """Train the sweep's tokenizer once (not once per trial) and point the base config at it. Returns the
    tokenizer directory (<home>/sweeps/<study>/tokenizer), or None when the trials share none
    (`_shared_tokenizer_job`)."""
    job = _shared_tokenizer_job(spec)
    if job is None:
        return None
    out = get_settings().ensure_home() / "sweeps" / study_name / "tokenizer"
    _train_shared_tokenizer(job, out)
    spec.config = apply_overrides(spec.config, {"tokenizer.path": str(out)})
    spec.raw = {**spec.raw, "config": spec.config}
    return str(out)


def check_train_trial(spec: SweepSpec, params: dict[str, Any]) -> None:
    """The train program's command-line check: the trial's kind's `preflight`, after the char tokenizer the
    sweep would share is trained into a directory thrown away (cheap: it counts characters), so a corpus that
    cannot give it is refused in the sweep's words (tokenizer.path in the sweep's config) before kind train's
    check says a single training's (--tokenizer DIR)."""
    job = _shared_tokenizer_job(spec)
    if job is not None and job.tokenizer.method == "char":
        with tempfile.TemporaryDirectory(prefix="tldrlab-tokenizer-check-") as directory:
            _train_shared_tokenizer(job, Path(directory))
    preflight("train", train_job_config(spec, params))


EXPERIMENT_KEYS = ("arm", "seed")
"""Parameters of the experiment program that pick what `train_arm` trains (not ExperimentConfig fields)."""


def experiment_config(spec: SweepSpec, params: dict[str, Any]) -> tuple[Any, str, int]:
    raw = apply_overrides(spec.config, params)
    arm = str(raw.pop("arm", "compressed_pai"))
    seed = raw.pop("seed", 1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"parameters.seed: must be an integer; got {seed!r}")
    return trial_config_of("experiment", raw, "dendrite experiment config"), arm, seed


def check_experiment(spec: SweepSpec, params: dict[str, Any]) -> None:
    config, arm, _ = experiment_config(spec, params)
    if not Path(config.data).exists():
        raise InvalidInputError(f"config.data: not found: {config.data}")
    if arm not in EXPERIMENT_ARMS:
        raise ConfigError(f"parameters.arm: {unknown_choice('arm', arm, EXPERIMENT_ARMS)}")


# -- a trial run: its study, its trial, its pruner -------------------------------------------------------
@dataclass
class TrialLink:
    """What a trial run reports to: the sweep, the study's trial, the pruner's reporter."""

    spec: SweepSpec
    trial: optuna.Trial
    reporter: Reporter


def trial_link(run: Run) -> TrialLink:
    """The study trial a run executes (tags `study` and `trial`; the storage from its sweep run's config)."""
    study_name, number = run.record.tags.get("study"), run.record.tags.get("trial")
    parent_id = run.record.parent_id
    if not isinstance(study_name, str) or not isinstance(number, int) or parent_id is None:
        raise ConfigError(f"run {run.id} is not a sweep trial (tags study and trial, a sweep parent)")
    parent = run.registry.get(parent_id)
    url = resolve_storage_url(parent.config.get("storage"))
    storage = open_storage(url)
    raw = optuna.load_study(study_name=study_name, storage=storage).user_attrs[SPEC_ATTR]
    spec = parse_sweep(raw)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=build_pruner(spec))
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    trial = optuna.Trial(study, trial_id)
    with refused_study_writes(url):
        mark_worker(trial)
        trial.set_user_attr(RUN_ATTR, run.id)
    run.set_environment(study=study_name, trial=number, sweep_params=trial.user_attrs.get(PARAMS_ATTR, {}))
    return TrialLink(spec, trial, Reporter(trial, spec.metric, url))


def refuse_ended_trial(record: RunRecord) -> None:
    """`--resume` of a sweep trial's run whose study trial has ended: ConflictError, before the run is
    touched. Its sweep tells the study a trial run that ended failed or cancelled (`runs cancel`) is FAIL and
    asks another in its place; resumed, the run then failed at once on that trial (Optuna's
    UpdateFinishedTrialError, a traceback) and was recorded failed."""
    number, study_name = record.sweep_trial, record.tags.get("study")
    if number is None or not isinstance(study_name, str) or record.parent_id is None:
        return
    url = resolve_storage_url(open_registry().get(record.parent_id).config.get("storage"))
    storage = open_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    state = storage.get_trial(trial_id).state
    if state.is_finished():
        raise ConflictError(
            f"run {record.id} is trial {number} of study {study_name!r}, which its sweep recorded as "
            f"{state.name}: it cannot be resumed; run the sweep again (a new trial takes its place)"
        )


def settle_trial(
    run: Run, link: TrialLink, value: float | None, pruned: optuna.TrialPruned | None
) -> dict[str, Any]:
    """Record a trial run's outcome where its sweep reads it: the summary's `pruned` or `sweep_value`
    (`value` None and no `pruned`: the metric was never reported, an error)."""
    if pruned is not None:
        run.set_summary(pruned=True, pruned_at_iteration=link.reporter.iterations)
        run.log(str(pruned))
        return {"state": "PRUNED", "iterations": link.reporter.iterations}
    if value is None:
        raise InvalidInputError(f"metric.name {link.spec.metric!r} was never reported by the trial")
    run.set_summary(sweep_value=value)
    return {"state": "COMPLETE", "value": value}


EXPERIMENT_ARM = "tldrlab.experiments.dendrite_experiment:train_arm"
"""What a trial of the experiment program trains, named rather than imported: kind `trial` also runs
command-line trials, in the sweep's own process, and those need no torch (the experiment loads it)."""


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
        row = load_target(EXPERIMENT_ARM)(experiment, arm, seed)
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


# -- the programs ------------------------------------------------------------------------------------------
def _command_config(spec: SweepSpec, params: dict[str, Any]) -> TrialConfig:
    return TrialConfig(program="command", params=params, sweep=spec.raw, source=spec.source)


def _experiment_config(spec: SweepSpec, params: dict[str, Any]) -> TrialConfig:
    return TrialConfig(program="experiment", params=params, sweep=spec.raw, source=spec.source)


ConfigFn = Callable[[SweepSpec, dict[str, Any]], BaseModel]
CheckFn = Callable[[SweepSpec, dict[str, Any]], None]


@dataclass(frozen=True)
class TrialProgram:
    """How a sweep program's trials run: the run kind of a trial, its config from the sweep's `config` and
    the trial's parameters, and the check made before any trial starts. `config` and `check` may be
    "module:function" strings, imported when first used (the areas above the sweep library, such as elm and
    lvm, keep their own trial code; this module does not import them)."""

    kind: str
    config_fn: ConfigFn | str
    check_fn: CheckFn | str | None = None
    """None: the trial's config (validated by its class) passes the command line's check of its run kind
    (`tldrlab.launch.preflight`: the kind's inputs are here, its `check` hook)."""

    def config(self, spec: SweepSpec, params: dict[str, Any]) -> BaseModel:
        fn = load_target(self.config_fn) if isinstance(self.config_fn, str) else self.config_fn
        return fn(spec, params)  # type: ignore[no-any-return]

    def check(self, spec: SweepSpec, params: dict[str, Any]) -> None:
        """The command line's check before any trial: the program's own, else its kind's `preflight` (what a
        trial reads, and this machine's device and precision)."""
        if self.check_fn is None:
            preflight(self.kind, self.config(spec, params))
            return
        fn = load_target(self.check_fn) if isinstance(self.check_fn, str) else self.check_fn
        fn(spec, params)

    def check_inputs(self, spec: SweepSpec, params: dict[str, Any]) -> None:
        """What a trial would read is there (its kind's `launch.check_inputs`): the part of `check` every
        front end makes, the API's submit too, where the machine's checks are left to the worker."""
        check_inputs(self.kind, self.config(spec, params))


TRIAL_PROGRAMS: dict[str, TrialProgram] = {
    "train": TrialProgram("train", train_job_config, check_train_trial),
    "elm": TrialProgram(
        "elm_train", "tldrlab.elm.optimize:elm_trial_config", "tldrlab.elm.optimize:check_elm"
    ),
    "lvm": TrialProgram("lvm_train", "tldrlab.lvm.sweep:lvm_job_config", "tldrlab.lvm.sweep:check_lvm"),
    "experiment": TrialProgram("trial", _experiment_config, check_experiment),
    "command": TrialProgram("trial", _command_config, lambda spec, params: None),
}
"""spec.kind -> how its trials run (each trial is a queued run of `kind`, tagged with its study and trial)."""


def check_sweep_inputs(config: SweepConfig) -> None:
    """Kind `sweep`'s check on every front end: its program's trials would find what they read (a training's
    data, a prepared ELM directory). Over the API a sweep on an empty data directory was accepted and each of
    its trials then failed; the command line refused it (`runner.check_sweep`, its `local_check`)."""
    spec = parse_sweep(config.sweep, source=config.source)
    resolve_program(spec)
    try:
        TRIAL_PROGRAMS[spec.kind].check_inputs(spec, representative_params(spec))
    except TldrlabError as exc:
        # a trial's field (`tokenizer.path`) is in the sweep's base config: where the API's submit points
        placed = exc.details.get("errors")
        if isinstance(placed, list):
            exc.details["errors"] = [{**e, "loc": ["sweep", "config", *e["loc"]]} for e in placed]
        raise
