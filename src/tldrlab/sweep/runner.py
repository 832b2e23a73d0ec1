"""Running a sweep: the study, its trials as queued runs, and telling Optuna how they ended.

    summary = run_sweep(load_sweep("sweep.yaml"), trials=8)      # a `sweep` run, executed in this process

A sweep is a run of kind `sweep` (`tldrlab.service.sweeps.sweep_job` executes it, in a worker or in the
CLI's process). `sweep_in_run` opens (or resumes) the study named by the sweep and loops: Optuna's sampler
proposes a trial (`study.ask`), the trial becomes a queued run of its program's kind (`tldrlab.sweep.trials`,
tagged with its study and trial, a child of the sweep run) and the worker system executes it (the
`TrialExecutor`: claims, heartbeats, retries, preemption and dead-worker recovery are the workers' own); the
trial run reports its evaluations to the study's pruner through the storage, and when it has ended the sweep
tells Optuna its value (COMPLETE), that it was pruned (PRUNED) or that it failed (FAIL). With `workers` > 1,
that many worker processes execute trials side by side while this process only coordinates.

Running the same sweep again resumes it: finished trials are kept, and a trial whose run was interrupted (its
process killed, preempted, Ctrl-C) resumes that run from its last checkpoint; the total counts toward
--trials.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState
from pydantic import BaseModel

from tldrlab.errors import (
    ConfigError,
    DiskFullError,
    FileTooLargeError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyFileSystemError,
    RunCancelledError,
    RunPreemptedError,
    WriteRefusedError,
)
from tldrlab.launch import Launched, launch_run, seed_of
from tldrlab.logs import get_logger
from tldrlab.runs import Run, RunRecord, RunRegistry, RunStatus, create_run, preempt
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.mapping import (
    PARAMS_ATTR,
    build_pruner,
    build_sampler,
    direction,
    grid_size,
    largest_params,
    quiet_optuna,
    representative_params,
    suggest_params,
)
from tldrlab.sweep.report import best_trial_summary
from tldrlab.sweep.spec import SweepSpec, parse_sweep, resolve_program
from tldrlab.sweep.storage import (
    RUN_ATTR,
    SPEC_ATTR,
    SWEEP_RUN_ATTR,
    fail_dead_sweep_runs,
    open_storage,
    redact,
    refuse_another_sweeps_study,
    refused_study_writes,
    resolve_storage_url,
)
from tldrlab.sweep.trials import TRIAL_PROGRAMS, share_tokenizer

DEFAULT_TRIALS = 10
"""Trials when neither --trials nor run_cap is given (grid: the grid's size)."""

MAX_CONSECUTIVE_FAILURES = 3
"""A sweep stops after this many failed trials in a row (a broken config must not loop forever)."""

POLL_S = 0.2
"""Seconds between looks at the trials other workers execute."""

ASKED_GRACE_S = 60.0
"""A trial without a run asked less than this long ago is another sweep process's, between its ask and its
run (a second `sweep run` of the study, a machine sharing it): failed then, it was taken from that process,
whose trial run then failed as it took the trial. An older one is a dead sweep's leftover."""

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

log = get_logger(__name__)


def target_trials(spec: SweepSpec, trials: int | None) -> int:
    """--trials, else run_cap, else the grid's size (grid) or DEFAULT_TRIALS; a grid is never exceeded."""
    n = trials or spec.run_cap or (grid_size(spec) if spec.method == "grid" else DEFAULT_TRIALS)
    if spec.method == "grid":
        n = min(n, grid_size(spec))
    if n < 1:
        raise InvalidInputError(f"--trials must be >= 1; got {n}")
    return n


def check_spec(spec: SweepSpec) -> None:
    """Validate the program's config with plausible parameter values before any trial or run exists, and
    with every numeric parameter at its largest (the largest model a trial builds: the parameter budget)."""
    program = TRIAL_PROGRAMS[spec.kind]
    program.check(spec, representative_params(spec))
    try:
        program.check(spec, largest_params(spec))
    except ConfigError as exc:
        raise ConfigError(f"with every numeric parameter at its largest: {exc}") from None


def check_sweep(config: SweepConfig) -> None:
    """Kind `sweep`'s command-line check: the program and its config, as the sweep itself checks them first,
    so a sweep file with a bad config leaves no failed sweep run behind."""
    spec = parse_sweep(config.sweep, source=config.source)
    resolve_program(spec)
    check_spec(spec)


def open_study(
    spec: SweepSpec, storage_url: str | None, study_name: str, *, seed_offset: int = 0, check: bool = True
) -> optuna.Study:
    """Create the study, or load it when it exists (with `check`, checking it was made from the same
    sweep)."""
    quiet_optuna()  # "A new study created" / "Using an existing study": `elm optimize` opens one first
    storage = open_storage(storage_url)
    seed = None if spec.seed is None else spec.seed + seed_offset
    study = optuna.create_study(
        storage=storage,
        sampler=build_sampler(spec, seed=seed),
        pruner=build_pruner(spec),
        study_name=study_name,
        direction=direction(spec),  # type: ignore[arg-type]
        load_if_exists=True,
    )
    if check:
        refuse_another_sweeps_study(study, spec)
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, spec.raw)
    return study


def state_counts(study: optuna.Study) -> Counter[TrialState]:
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def _target_reached(spec: SweepSpec, study: optuna.Study) -> bool:
    if spec.target is None:
        return False
    values = [
        t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    if not values:
        return False
    return (max(values) >= spec.target) if spec.goal == "maximize" else (min(values) <= spec.target)


def _describe(trial: optuna.trial.FrozenTrial) -> str:
    params = trial.user_attrs.get(PARAMS_ATTR, trial.params)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    value = f" value={trial.value:.5g}" if trial.value is not None else ""
    return f"trial {trial.number} {trial.state.name}{value} ({shown})"


def _asked_here(registry: RunRegistry, trial: optuna.trial.FrozenTrial) -> bool:
    """Whether `trial` was asked by a sweep run of `registry`'s home, whose trial runs it holds (a study in
    PostgreSQL may be shared by the sweeps of several homes)."""
    sweep_run = trial.user_attrs.get(SWEEP_RUN_ATTR)
    if not isinstance(sweep_run, str):
        return False
    try:
        registry.get(sweep_run)
    except NotFoundError:
        return False
    return True


def _asked_recently(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether `trial` was asked less than `ASKED_GRACE_S` ago (Optuna records its start in local time)."""
    started = trial.datetime_start
    return started is not None and (datetime.now() - started).total_seconds() < ASKED_GRACE_S


def _failed_grid_point(study: optuna.Study) -> dict[str, Any] | None:
    """The parameters of a grid point whose trials all failed, once every point has been run (else None).
    Optuna's grid sampler counts a failed point as done and then draws points at random, so the trials asked
    after ran points that had finished again, and the failed one never, while the sweep counted the grid
    complete."""
    sampler = study.sampler
    if not isinstance(sampler, optuna.samplers.GridSampler) or not sampler.is_exhausted(study):
        return None
    trials = study.get_trials(deepcopy=False)
    taken = [t.params for t in trials if t.state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING)]
    failed = (t.params for t in trials if t.state == TrialState.FAIL and t.params)
    return next((params for params in failed if params not in taken), None)


def _continued_here(registry: RunRegistry, sweep_run_id: str, record: RunRecord) -> RunRecord | None:
    """An unfinished trial run of an earlier sweep run of the study that has ended (killed, stopped,
    interrupted) becomes a trial of this one, `sweep_run_id`, its new parent: the sweep's worker processes
    take only the trials whose parent is their sweep run (their queue lane), and cancelling this sweep
    cancels it with the rest. Its updated record; None for a trial of this sweep, a finished one, or one
    whose sweep run may still go on (running in another process, queued to resume)."""
    if record.status.finished or record.parent_id in (None, sweep_run_id):
        return None
    try:
        if not registry.get(str(record.parent_id)).status.finished:
            return None
    except NotFoundError:
        pass  # its sweep run was deleted: nothing else continues it
    registry.update(record.id, parent_id=sweep_run_id)
    return registry.get(record.id)


def _stop_after_failures(failures: int, last_error: str | None) -> None:
    """Stop the sweep at `MAX_CONSECUTIVE_FAILURES` failed trials in a row, with the last one's error."""
    if failures >= MAX_CONSECUTIVE_FAILURES:
        raise InvalidInputError(
            f"{failures} trials failed in a row; stopping the sweep. Last error: {last_error}"
        )


class TrialExecutor(Protocol):
    """How a sweep has its trial runs executed: by the worker system (`tldrlab.service.sweeps`)."""

    def submit(self, run_id: str, *, announce: bool = True) -> None:
        """Put a trial run on the queue, on the sweep's lane (a trial it created; with `announce` False, one
        it continues, queued already); `announce`: publish its `queued` event."""

    def execute(self, run_id: str) -> str:
        """Execute the run here (or wait while another worker does); what happened, as Worker.handle says
        ("retrying" also while a transient failure's backoff runs: the sweep asks again later)."""

    def start_helpers(self, count: int) -> None:
        """Start `count` worker processes that execute this sweep's queued trial runs (only those) side by
        side."""

    def stop_helpers(self) -> None:
        """Stop them again."""


@dataclass
class PreparedSweep:
    spec: SweepSpec
    config: SweepConfig
    name: str
    n_trials: int
    url: str


def prepare_sweep(spec: SweepSpec, config: SweepConfig, echo: Any) -> PreparedSweep:
    """Check the sweep, open (or resume) its study and fail the sweep runs of dead processes."""
    quiet_optuna()
    resolve_program(spec)
    check_spec(spec)
    name = config.study or spec.name
    n_trials = target_trials(spec, config.trials)
    url = resolve_storage_url(config.storage)
    study = open_study(spec, url, name)
    before = state_counts(study)
    finished = sum(before[s] for s in FINISHED)
    # a study holding more than were asked for read "2/1 trials finished so far", as if one were to run
    so_far = (
        f"{finished}/{n_trials} trials finished so far"
        if finished < n_trials
        else f"it already holds {finished} finished trials, {n_trials} asked for: nothing to run"
    )
    echo(f"study {name!r} in {redact(url)}: {spec.method} search of {spec.metric} ({spec.goal}), {so_far}")
    fail_dead_sweep_runs(name)
    return PreparedSweep(spec, config, name, n_trials, url)


def outcome_of(record: RunRecord) -> tuple[TrialState, float | None]:
    """How a finished trial run ended, for Optuna (its summary holds `pruned` or `sweep_value`)."""
    if record.status == RunStatus.COMPLETED:
        if record.metrics.get("pruned"):
            return TrialState.PRUNED, None
        value = record.metrics.get("sweep_value")
        if isinstance(value, int | float):
            return TrialState.COMPLETE, float(value)
    return TrialState.FAIL, None


def _tell(study: optuna.Study, number: int, state: TrialState, value: float | None) -> None:
    # Optuna's GridSampler stops the study when its grid is used up, which it may only do from inside
    # study.optimize; the sweep's own loop stops there anyway, so tell it we are in that loop.
    study._thread_local.in_optimize_loop = True
    try:
        if state == TrialState.COMPLETE:
            study.tell(number, value)
        else:
            study.tell(number, state=state)
    except ValueError:  # told already (another process settled it first)
        pass
    finally:
        study._thread_local.in_optimize_loop = False


REFUSED_WRITES: dict[str | None, type[WriteRefusedError]] = {
    kind.code: kind for kind in (DiskFullError, FileTooLargeError, ReadOnlyFileSystemError)
}
"""A trial run's error code for a write the system refused, and its error."""


def _refusal_of(record: RunRecord, number: int) -> WriteRefusedError | None:
    """The refused write a failed trial run ended with (its study's database full, its checkpoint over the
    file-size limit), for the sweep to stop with at once: the next trials would meet the same disk or limit,
    and three of them failing in a row buried the cause under "3 trials failed in a row". The trial run
    worded it with the sweep's hint already (`runs.run.resume_hint`): running the sweep again keeps that run
    failed and asks a new trial in its place."""
    kind = REFUSED_WRITES.get(record.error_code)
    if kind is None:
        return None
    return kind(f"trial {number}: {(record.message or '').removeprefix('failed: ')}")


def run_trials(
    run: Run,
    prepared: PreparedSweep,
    executor: TrialExecutor,
    *,
    echo: Any,
) -> str:
    """Ask, create, execute and tell trials until the study holds `n_trials` finished ones (or the target is
    reached); returns why it stopped (trials, target)."""
    spec, name, n_trials = prepared.spec, prepared.name, prepared.n_trials
    parallel, quiet = prepared.config.workers, prepared.config.quiet
    program = TRIAL_PROGRAMS[spec.kind]
    # checked by `prepare_sweep` already; since then the base config may point at the sweep's shared
    # tokenizer (`share_tokenizer`), which the study's stored sweep does not name
    study = open_study(spec, prepared.url, name, check=False)
    # a sampler seeded the same way on resume would propose the first trials' parameters again
    if spec.seed is not None:
        study.sampler = build_sampler(spec, seed=spec.seed + len(study.get_trials(deepcopy=False)))
    registry = run.registry
    failures = 0
    started = time.monotonic()
    settled = 0
    seen: set[str] = set()  # the trial runs this execution of the sweep has looked at (or created)
    if parallel > 1:
        executor.start_helpers(parallel)
    try:
        while True:
            progressed = False
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                run_id = trial.user_attrs.get(RUN_ATTR)
                if not isinstance(run_id, str):
                    # asked, but its run was never created (its sweep died in between): ask again; unless
                    # another sweep process of the study asked it just now and is creating its run
                    if not _asked_recently(trial):
                        _tell(study, trial.number, TrialState.FAIL, None)
                    continue
                try:
                    record = registry.get(run_id)
                except NotFoundError:
                    if not _asked_here(registry, trial):  # a run of another machine's home
                        continue
                    # its run was deleted (`runs delete` of an interrupted trial's run): nothing would ever
                    # end it, and the sweep waited for it for good
                    _tell(study, trial.number, TrialState.FAIL, None)
                    progressed = True
                    frozen = study.get_trials(deepcopy=False)[trial.number]
                    gone = f"its run {run_id} was deleted; a new trial takes its place"
                    echo(f"{_describe(frozen)}\n  error: {gone}")
                    continue
                if record.status == RunStatus.CANCELLED and not record.cancel_requested:
                    # interrupted (Ctrl-C), not cancelled by anyone: it resumes from its checkpoint
                    registry.update(run_id, status=RunStatus.QUEUED, message="resumed by its sweep")
                    record = registry.get(run_id)
                record = _continued_here(registry, run.id, record) or record
                if run_id not in seen:
                    seen.add(run_id)
                    if parallel > 1 and record.status is RunStatus.QUEUED and record.parent_id == run.id:
                        # this sweep's workers take trials from its lane only, where every trial put back
                        # from now on goes (`worker.requeue`): one queued before waits on an earlier sweep's
                        # lane, dropped since (`JobQueue.drop_lane`), or on none
                        executor.submit(run_id, announce=False)
                if not record.status.finished and parallel == 1:
                    outcome = executor.execute(run_id)
                    if outcome == "preempted":
                        raise RunPreemptedError(f"the sweep's worker is stopping (trial {trial.number})")
                    if outcome == "cancelled" and not registry.get(run_id).cancel_requested:
                        raise RunCancelledError(f"interrupted during trial {trial.number}")
                    record = registry.get(run_id)
                if not record.status.finished:
                    continue
                state, value = outcome_of(record)
                _tell(study, trial.number, state, value)
                progressed = True
                settled += 1
                frozen = study.get_trials(deepcopy=False)[trial.number]
                done = sum(1 for t in study.get_trials(deepcopy=False) if t.state in FINISHED)
                eta = (time.monotonic() - started) / settled * max(0, n_trials - done)
                line = f"{_describe(frozen)} · {done}/{n_trials} finished · ETA {eta:.0f}s"
                refused = _refusal_of(record, trial.number) if state == TrialState.FAIL else None
                if state == TrialState.FAIL and refused is None:  # a refusal is the sweep's error line
                    line += f"\n  error: {record.message}"
                echo(line)
                if refused is not None:
                    raise refused
                failures = failures + 1 if state == TrialState.FAIL else 0
                _stop_after_failures(failures, record.message)
            # a cancelled sweep (POST /runs/{id}/cancel) stops here, its trials settled, before it asks for
            # another one; the route cancelled its running trial too, which has stopped (and been told) above
            run.check_cancelled()
            # SIGTERM (the CLI's `preempt_on_sigterm`), SIGTERM or SIGINT (a worker's handler; the message
            # names it): a trial running here stops in its own loop; a sweep whose workers run its trials
            # stopped only here, and it went on asking for more
            if preempt.stop_requested():
                raise RunPreemptedError(f"the sweep's process is stopping ({preempt.stop_reason()})")
            counts = state_counts(study)
            finished = sum(counts[s] for s in FINISHED)
            if finished >= n_trials:
                return "trials"
            if _target_reached(spec, study):
                return "target"
            running = counts[TrialState.RUNNING]
            if finished + running < n_trials and running < parallel:
                if (retry := _failed_grid_point(study)) is not None:
                    study.enqueue_trial(retry)  # the next ask takes it
                asked = study.ask()
                params = suggest_params(asked, spec)
                try:
                    config = program.config(spec, params)
                except ConfigError as exc:
                    # a draw its program refuses (warm-up past a drawn max_steps) fails that trial, as a run
                    # that fails does: it ended the sweep, the trial left RUNNING in the study
                    _tell(study, asked.number, TrialState.FAIL, None)
                    echo(
                        f"{_describe(study.get_trials(deepcopy=False)[asked.number])}\n  error: {exc.message}"
                    )
                    failures += 1
                    _stop_after_failures(failures, exc.message)
                    continue
                if quiet and isinstance(getattr(config, "train", None), BaseModel):
                    config.train.progress = False  # type: ignore[attr-defined]
                record = create_run(
                    program.kind,
                    config,
                    seed=seed_of(config),
                    parent_id=run.id,
                    tags={"study": name, "trial": asked.number},
                    registry=registry,
                )
                asked.set_user_attr(SWEEP_RUN_ATTR, run.id)  # first: a trial without a run id is failed
                asked.set_user_attr(RUN_ATTR, record.id)
                executor.submit(record.id)
                seen.add(record.id)
                continue
            if not progressed:
                run.heartbeat(progress=finished / n_trials)
                time.sleep(POLL_S)
    finally:
        if parallel > 1:
            executor.stop_helpers()


def sweep_in_run(
    run: Run, config: SweepConfig, executor: TrialExecutor, *, echo: Any = None
) -> dict[str, Any]:
    """Kind `sweep`: the study's trials as children of `run`; the summary names the best trial. A write to
    its study (SQLite or PostgreSQL) that the system refuses ends it with that refusal, naming the database
    (the run fails as `disk_full` / `file_too_large`): the study keeps its finished trials, and running the
    sweep again resumes it."""
    with refused_study_writes(resolve_storage_url(config.storage)):
        return _sweep_in_run(run, config, executor, echo or (lambda line: run.log(line)))


def _sweep_in_run(run: Run, config: SweepConfig, executor: TrialExecutor, echo: Any) -> dict[str, Any]:
    spec = parse_sweep(config.sweep, source=config.source)
    spec.raw = config.sweep
    prepared = prepare_sweep(spec, config, echo)
    run.set_environment(study=prepared.name, storage=redact(prepared.url), trials=prepared.n_trials)
    if spec.kind == "train":
        shared = share_tokenizer(spec, prepared.name)
        if shared:
            run.log("the trials share one tokenizer", path=shared)
    stopped_by = run_trials(run, prepared, executor, echo=echo)
    study = optuna.load_study(study_name=prepared.name, storage=open_storage(prepared.url))
    counts = state_counts(study)
    summary: dict[str, Any] = {
        "study": prepared.name,
        "storage": redact(prepared.url),
        "run_id": run.id,
        "metric": spec.metric,
        "trials": {state.name: counts[state] for state in TrialState if counts[state]},
        "stopped_by": stopped_by,
    }
    if stopped_by == "target":  # fewer trials than asked for: the report says why
        summary["target"] = {"value": spec.target, "goal": spec.goal, "trials": prepared.n_trials}
    best = best_trial_summary(study)
    if best is not None:
        summary["best"] = best
        run.set_summary(best_value=best["value"], best_trial=best["number"])
    run.set_summary(**{f"trials_{k.lower()}": v for k, v in summary["trials"].items()})
    return summary


def run_sweep(
    spec: SweepSpec,
    *,
    trials: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    quiet: bool = False,
    echo: Any = print,
) -> dict[str, Any]:
    """Run (or resume) a sweep to `trials` finished trials as a `sweep` run in this process (the launch path:
    its trials are executed by the worker system); returns a summary with the best trial."""
    if workers < 1:
        raise InvalidInputError(f"--workers must be >= 1; got {workers}")
    resolve_program(spec)
    config = SweepConfig(
        sweep=spec.raw, source=spec.source, trials=trials, workers=workers, storage=storage,
        study=study_name, quiet=quiet,
    )  # fmt: skip
    return launch_sweep(config, echo=echo).result or {}


def launch_sweep(config: SweepConfig, *, echo: Any = print) -> Launched:
    """Run (or resume) a `sweep` run of `config` in this process, tagged with its study's name; `echo` gets
    every line it logs (each trial as it ends)."""
    study = config.study or parse_sweep(config.sweep, source=config.source).name
    # --quiet: the sweep's own lines (each trial as it ends), not every line its trials' runs log
    return launch_run("sweep", config, tags={"study": study}, echo=echo, echo_runs_inside=not config.quiet)


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
