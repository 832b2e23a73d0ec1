"""Running a sweep: the study, its workers and the trial loop.

    summary = run_sweep(load_sweep("sweep.yaml"), trials=8, workers=2)

`run_sweep` opens (or resumes) the study named by the sweep, starts a parent run of kind "sweep", and runs
`worker_loop` in this process (workers=1) or in K spawned processes sharing the study (PostgreSQL or SQLite).
Each worker repeats: fail dead workers' trials (and queue their retries), stop when the study holds `trials`
finished (COMPLETE + PRUNED) trials, else run one trial. Running the same command again resumes: finished
trials are kept, interrupted ones are FAIL and re-run with the same parameters, and the total counts toward
--trials. Ctrl-C: the running trial is marked FAIL and queued for a re-run, then the sweep ends as cancelled.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from tldrlab.errors import ConflictError, InvalidInputError, RunCancelledError, TldrlabError
from tldrlab.logs import get_logger
from tldrlab.sweep.config import SweepConfig
from tldrlab.sweep.mapping import build_pruner, build_sampler, direction, grid_size, representative_params
from tldrlab.sweep.spec import SweepSpec, parse_sweep
from tldrlab.sweep.storage import (
    open_storage,
    reconcile_dead_workers,
    redact,
    resolve_storage_url,
    retry_trial,
)
from tldrlab.sweep.trials import PROGRAM_CHECKS, TRIAL_PROGRAMS, TrialContext
from tldrlab.threads import adopt_threads, plan_for_share

SPEC_ATTR = "sweep"
"""study.user_attrs key holding the sweep file's mapping (workers on other machines rebuild the spec)."""

DEFAULT_TRIALS = 10
"""Trials when neither --trials nor run_cap is given (grid: the grid's size)."""

MAX_CONSECUTIVE_FAILURES = 3
"""A worker stops after this many failed trials in a row (a broken config must not loop forever)."""

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

log = get_logger(__name__)


@dataclass
class WorkerResult:
    """What one worker did."""

    ran: int = 0
    """Trials this worker ran (any end state)."""
    states: dict[str, int] = field(default_factory=dict)
    """Their end states."""
    stopped_by: str = "trials"
    """Why it stopped: trials (the total was reached), target, failures."""


def quiet_optuna() -> None:
    """Optuna logs every trial (and failed ones with a traceback); tldrlab prints its own lines."""
    import warnings

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # heartbeats and the retry callback are "experimental" in Optuna (since v2.8); they are what resume needs
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def target_trials(spec: SweepSpec, trials: int | None) -> int:
    """--trials, else run_cap, else the grid's size (grid) or DEFAULT_TRIALS; a grid is never exceeded."""
    n = trials or spec.run_cap or (grid_size(spec) if spec.method == "grid" else DEFAULT_TRIALS)
    if spec.method == "grid":
        n = min(n, grid_size(spec))
    if n < 1:
        raise InvalidInputError(f"--trials must be >= 1; got {n}")
    return n


def check_spec(spec: SweepSpec) -> None:
    """Validate the program's config with plausible parameter values before any trial or run exists."""
    PROGRAM_CHECKS[spec.kind](spec, representative_params(spec))


def _same_search(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("method", "metric", "parameters", "program", "command")
    return all(a.get(k) == b.get(k) for k in keys)


def open_study(
    spec: SweepSpec, storage_url: str | None, study_name: str, *, seed_offset: int = 0
) -> optuna.Study:
    """Create the study, or load it when it exists (checking it was made from the same sweep)."""
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
    if study.direction.name.lower() != direction(spec):
        raise ConflictError(
            f"study {study_name!r} exists with goal {study.direction.name.lower()}; use --study NEW_NAME"
        )
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        study.set_user_attr(SPEC_ATTR, spec.raw)
    elif not _same_search(stored, spec.raw):
        raise ConflictError(
            f"study {study_name!r} was created from a different sweep (method, metric, parameters or program "
            "differ); resume it with the same file or pick another --study NAME"
        )
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
    from tldrlab.sweep.mapping import PARAMS_ATTR

    params = trial.user_attrs.get(PARAMS_ATTR, trial.params)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    value = f" value={trial.value:.5g}" if trial.value is not None else ""
    return f"trial {trial.number} {trial.state.name}{value} ({shown})"


def worker_loop(
    spec: SweepSpec,
    storage_url: str | None,
    study_name: str,
    n_trials: int,
    *,
    parent_id: str | None = None,
    worker_index: int = 0,
    quiet: bool = False,
    echo: Any = print,
) -> WorkerResult:
    """Run trials of the study until it holds `n_trials` finished ones (see the module docstring)."""
    quiet_optuna()
    offset = 7919 * worker_index
    study = open_study(spec, storage_url, study_name, seed_offset=offset)
    # a sampler seeded the same way on resume would propose the first trials' parameters again
    if spec.seed is not None:
        study.sampler = build_sampler(spec, seed=spec.seed + offset + len(study.get_trials(deepcopy=False)))
    ctx = TrialContext(study_name=study_name, parent_id=parent_id, quiet=quiet)
    result = WorkerResult()
    current: dict[str, int] = {}
    failures = 0
    started = time.monotonic()

    def objective(trial: optuna.Trial) -> float:
        from tldrlab.sweep.mapping import suggest_params
        from tldrlab.sweep.storage import mark_worker

        current["number"] = trial.number
        mark_worker(trial)
        params = suggest_params(trial, spec)
        return TRIAL_PROGRAMS[spec.kind](spec, trial, params, ctx)

    while True:
        # trials of dead workers elsewhere (heartbeat older than the grace period), then those on this host
        optuna.storages.fail_stale_trials(study)
        for dead in reconcile_dead_workers(study):
            pid = dead.user_attrs.get("worker", {}).get("pid")
            echo(f"trial {dead.number}: its worker (pid {pid}) is gone; marked FAIL, queued again")
        counts = state_counts(study)
        finished = sum(counts[s] for s in FINISHED)
        if finished + counts[TrialState.RUNNING] >= n_trials:
            result.stopped_by = "trials"
            break
        if _target_reached(spec, study):
            result.stopped_by = "target"
            break
        trial_started = time.monotonic()
        error: BaseException | None = None
        try:
            study.optimize(objective, n_trials=1)
        except (RunCancelledError, KeyboardInterrupt):
            number = current.get("number")
            if number is not None:
                frozen = study.get_trials(deepcopy=False)[number]
                if frozen.state == TrialState.FAIL:
                    retry_trial(study, frozen)
                    echo(
                        f"trial {number} interrupted: marked FAIL, queued to run again when the sweep resumes"
                    )
            raise
        except Exception as exc:  # the trial is already FAIL in the study
            error = exc
        number = current.get("number")
        if number is None:
            continue
        frozen = study.get_trials(deepcopy=False)[number]
        result.ran += 1
        result.states[frozen.state.name] = result.states.get(frozen.state.name, 0) + 1
        done = sum(1 for t in study.get_trials(deepcopy=False) if t.state in FINISHED)
        elapsed = time.monotonic() - trial_started
        eta = (time.monotonic() - started) / result.ran * max(0, n_trials - done)
        line = f"{_describe(frozen)} in {elapsed:.1f}s · {done}/{n_trials} finished · ETA {eta:.0f}s"
        if error is not None:
            msg = error.message if isinstance(error, TldrlabError) else f"{type(error).__name__}: {error}"
            line += f"\n  error: {msg}"
        echo(line)
        failures = failures + 1 if frozen.state == TrialState.FAIL else 0
        current.pop("number", None)
        if failures >= MAX_CONSECUTIVE_FAILURES:
            result.stopped_by = "failures"
            msg = error.message if isinstance(error, TldrlabError) else str(error)
            raise InvalidInputError(
                f"{failures} trials failed in a row; stopping this worker. Last error: {msg}"
            )
    return result


def _worker_process(
    raw: dict[str, Any],
    source: str | None,
    storage_url: str,
    study_name: str,
    n_trials: int,
    parent_id: str | None,
    worker_index: int,
    quiet: bool,
    threads: dict[str, Any] | None = None,
) -> None:
    """Entry point of a spawned worker process (rebuilds the spec from the stored mapping)."""
    from tldrlab.logs import configure_console

    if threads is not None:  # this worker's share of the CPUs, chosen by the parent
        adopt_threads(threads)
    configure_console("WARNING" if quiet else None)
    spec = parse_sweep(raw, source=source)
    spec.raw = raw
    try:
        worker_loop(
            spec, storage_url, study_name, n_trials, parent_id=parent_id, worker_index=worker_index,
            quiet=quiet, echo=lambda line: print(f"[worker {worker_index}] {line}", flush=True),
        )  # fmt: skip
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except TldrlabError as exc:
        print(f"[worker {worker_index}] error [{exc.code}] {exc.message}", flush=True)
        raise SystemExit(exc.exit_code) from None


def run_workers(
    spec: SweepSpec,
    storage_url: str,
    study_name: str,
    n_trials: int,
    k: int,
    parent_id: str | None,
    quiet: bool,
) -> list[int]:
    """K spawned worker processes on one study; returns their exit codes."""
    context = multiprocessing.get_context("spawn")
    threads = plan_for_share(k).as_dict()
    procs = [
        context.Process(
            target=_worker_process,
            args=(spec.raw, spec.source, storage_url, study_name, n_trials, parent_id, i, quiet, threads),
            name=f"tldrlab-sweep-worker-{i}",
        )
        for i in range(k)
    ]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:  # they got the same Ctrl-C; give them time to queue their trials again
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
        raise
    return [proc.exitcode or 0 for proc in procs]


def resolve_program(spec: SweepSpec) -> None:
    """A relative script `program` is taken relative to the sweep file when it exists there."""
    from pathlib import Path

    if spec.kind != "command" or not spec.program or not spec.source:
        return
    candidate = Path(spec.source).resolve().parent / spec.program
    if not Path(spec.program).is_absolute() and not Path(spec.program).exists() and candidate.exists():
        spec.program = str(candidate)
        spec.raw = {**spec.raw, "program": spec.program}


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
    """Run (or resume) a sweep to `trials` finished trials as a `sweep` run; returns a summary with the best
    trial."""
    from tldrlab.runs import start_run

    if workers < 1:
        raise InvalidInputError(f"--workers must be >= 1; got {workers}")
    resolve_program(spec)
    config = SweepConfig(
        sweep=spec.raw, source=spec.source, trials=trials, workers=workers, storage=storage,
        study=study_name, quiet=quiet,
    )  # fmt: skip
    prepared = _prepare(spec, config, echo)
    with start_run("sweep", config, tags={"study": prepared.name}) as run:
        return _sweep_in_run(run, prepared, echo)


def sweep_job(run: Any, config: SweepConfig) -> dict[str, Any]:
    """Run kind `sweep`: the study's trials as children of `run`; the summary names the best trial."""
    spec = parse_sweep(config.sweep, source=config.source)
    spec.raw = config.sweep
    return _sweep_in_run(run, _prepare(spec, config, run.log), run.log)


@dataclass
class _PreparedSweep:
    spec: SweepSpec
    config: SweepConfig
    name: str
    n_trials: int
    url: str


def _prepare(spec: SweepSpec, config: SweepConfig, echo: Any) -> _PreparedSweep:
    """Check the sweep, open (or resume) its study and fail the sweep runs of dead processes."""
    from tldrlab.sweep.storage import fail_dead_sweep_runs

    quiet_optuna()
    resolve_program(spec)
    check_spec(spec)
    name = config.study or spec.name
    n_trials = target_trials(spec, config.trials)
    url = resolve_storage_url(config.storage)
    study = open_study(spec, url, name)
    before = state_counts(study)
    echo(
        f"study {name!r} in {redact(url)}: {spec.method} search of {spec.metric} ({spec.goal}), "
        f"{sum(before[s] for s in FINISHED)}/{n_trials} trials finished so far"
    )
    fail_dead_sweep_runs(name)
    return _PreparedSweep(spec, config, name, n_trials, url)


def _sweep_in_run(run: Any, prepared: _PreparedSweep, echo: Any) -> dict[str, Any]:
    spec, name, n_trials, url = prepared.spec, prepared.name, prepared.n_trials, prepared.url
    workers, quiet = prepared.config.workers, prepared.config.quiet
    run.set_environment(study=name, storage=redact(url), trials=n_trials)
    if spec.kind == "train":
        from tldrlab.sweep.trials import share_tokenizer

        shared = share_tokenizer(spec, name)
        if shared:
            run.log("the trials share one tokenizer", path=shared)
    if workers == 1:
        worker = worker_loop(spec, url, name, n_trials, parent_id=run.id, quiet=quiet, echo=echo)
        stopped_by = worker.stopped_by
    else:
        codes = run_workers(spec, url, name, n_trials, workers, run.id, quiet)
        stopped_by = "trials"
        if any(codes):
            raise InvalidInputError(f"sweep workers exited with codes {codes}; see their output above")
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    counts = state_counts(study)
    summary: dict[str, Any] = {
        "study": name,
        "storage": redact(url),
        "run_id": run.id,
        "trials": {state.name: counts[state] for state in TrialState if counts[state]},
        "stopped_by": stopped_by,
    }
    from tldrlab.sweep.report import best_trial_summary

    best = best_trial_summary(study)
    if best is not None:
        summary["best"] = best
        run.set_summary(best_value=best["value"], best_trial=best["number"])
    run.set_summary(**{f"trials_{k.lower()}": v for k, v in summary["trials"].items()})
    return summary


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
