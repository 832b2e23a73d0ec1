"""One launch path for every run, whoever starts it: the CLI (in-process), the API (queued) and the workers.

    record = submit_run("train", raw_config, queue=queue)      # API: validate, prepare, create, enqueue
    launched = launch_run("train", raw_config)                  # CLI: the same preparation, then execute here
    launched = launch_run("train", {}, resume="train-2026...")  # continue a run under the resume policy
    execute(run_id, worker=...)                                 # a worker: execute a queued run

`prepare_run` is the one preparation both sides share: the kind's config class validates the raw config
(InvalidConfigError naming the field), `dataset:<id>` input paths become the registered data set's path, and
the kind's `prepare` step runs (train records the data splits it found), so a run started by the CLI and one
started by the API with the same config store the same config and train to the same losses. `check_inputs` is
the one check of what a run reads both sides make before a run exists (the kind's `must_exist` and `check`:
a prepared data directory, a trained model run, a store holding concepts); only the kind's `local_check` of
the machine (device, precision) is the command line's alone, as the API's runs execute elsewhere. Path
confinement is not done here: the API confines every path a config names before it calls `submit_run`
(`service.state.submit_run` through `service.confine`: 422 naming the field, 403 outside the data roots), and
its worker confines the stored config again right before executing it (`service.confine.confine_again`); the
CLI, run by the machine's own user, reads and writes where it is told.

`launch_run` also owns what only an in-process launch needs: the resume policy (the kind must be resumable,
the run not completed, and only the kind's `resume_fields` may change), SIGTERM -> checkpoint and preempt
(the loop stops after its step, the run goes back to `queued`; `--resume` continues it; a kind that does
not resume ends `cancelled`), and distributed followers (ranks other than 0 of torchrun / accelerate run the
kind's `follower` without a run of their own).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tldrlab.choices import choose_one_of, unknown_choice
from tldrlab.config import Settings, get_settings
from tldrlab.errors import (
    ConfigError,
    ConflictError,
    InvalidConfigError,
    InvalidInputError,
    InvalidRequestError,
    NotFoundError,
    PathNotAllowedError,
    RunCancelledError,
    RunPreemptedError,
    ServiceUnavailableError,
    TldrlabError,
    UnknownKindError,
)
from tldrlab.kinds import (
    RunKind,
    continued_by_parent,
    get_kind,
    resolve_execute,
    resumes,
    submittable_kinds,
    validate_config,
)
from tldrlab.logs import REPORTED_BY_CALLER
from tldrlab.runs import RunRecord, RunRegistry, RunStatus, create_run, execute_run, open_registry, preempt
from tldrlab.runs.archive import directory_gone
from tldrlab.runs.atomic import atomic_write_text
from tldrlab.runs.datasets import resolve_dataset_ref
from tldrlab.runs.db import SQLITE_HEADER
from tldrlab.runs.paths import InputPath, path_sites
from tldrlab.runs.reconcile import OrphanRules, Settlement, cancel_queued
from tldrlab.runs.reconcile import end_children_left_behind as _end_children_left_behind
from tldrlab.runs.registry import SUBMITTED_VIA
from tldrlab.targets import load_target
from tldrlab.track.wandb_tracker import check_online_credentials, wandb_mode
from tldrlab.train.same_data import check_unchanged


@dataclass
class Launched:
    """A run launched in this process: its record (as it ended) and what its execute function returned."""

    record: RunRecord
    result: dict[str, Any] | None


def seed_of(config: BaseModel) -> int | None:
    """The seed a config carries (`seed`, else `train.seed`), recorded in the manifest."""
    for holder in (config, getattr(config, "train", None)):
        seed = getattr(holder, "seed", None)
        if isinstance(seed, int):
            return seed
    return None


def recorded_seed(config: BaseModel, seed: int | None) -> int | None:
    """The seed the manifest records: the config's own, which seeds the run. A request's separate `seed`
    may only repeat it: a different one was recorded while the run used the config's, so the manifest
    named a seed the run never had. Only a request body (`POST /runs`) carries such a seed: refused as its
    invalid body (422)."""
    carried = seed_of(config)
    if seed is not None and carried is not None and seed != carried:
        raise InvalidRequestError(
            f"seed {seed} is not the seed the run uses: its config's seed is {carried}; set the seed in the "
            "config (`seed`, or `train.seed` for training) instead"
        )
    return seed if seed is not None else carried


def resolve_dataset_refs(config: BaseModel) -> None:
    """`dataset:<id>` names a registered data set: its input paths become the data set's path (in place)."""
    for site in path_sites(config):
        if isinstance(site.marker, InputPath) and isinstance(site.value, str):
            site.set(resolve_dataset_ref(site.value))


def prepare_run(kind: str, raw: dict[str, Any] | BaseModel) -> tuple[RunKind, BaseModel]:
    """The kind and its validated, prepared config (see the module docstring)."""
    spec = get_kind(kind)
    config = validate_config(spec.name, raw)
    resolve_dataset_refs(config)
    if spec.prepare is not None:
        config = load_target(spec.prepare)(config)
    return spec, config


def study_of(spec: RunKind, config: BaseModel) -> str | None:
    """The study a run of `spec` with `config` opens when it starts (its kind's `study`), else None."""
    if spec.study is None:
        return None
    name: str = load_target(spec.study)(config)
    return name


def check_submittable(kind: str) -> RunKind:
    """The kind, if users may submit it; UnknownKindError (422) offering the kinds they may, also for an
    internal child kind (a sweep's `trial`, an experiment's arm: started by their parent run)."""
    names = sorted(k.name for k in submittable_kinds())
    try:
        spec = get_kind(kind)
    except UnknownKindError:
        raise UnknownKindError(unknown_choice("run kind", kind, names), kinds=names) from None
    if not spec.submittable:
        started = f"runs of kind {spec.name!r} are started by their parent run, not submitted"
        raise UnknownKindError(f"{started}; {choose_one_of(names)}", kinds=names)
    return spec


def submit_run(
    kind: str,
    raw: dict[str, Any] | BaseModel,
    *,
    queue: Any,
    registry: RunRegistry,
    settings: Settings,
    seed: int | None = None,
    run_id: str | None = None,
    parent_id: str | None = None,
    tags: dict[str, Any] | None = None,
) -> RunRecord:
    """Validate and prepare a config of a submittable kind, check what it reads as a command line does
    (`check_inputs`: InvalidConfigError naming what is missing, as for a refusal of the kind's prepare step;
    a conflict stays one), create a queued run and enqueue it. The kind's `local_check` (this machine's
    device) is left to the worker that executes it.

    ServiceUnavailableError (and no run left queued) when the queue is down.
    """
    check_submittable(kind)
    try:
        # the kind's prepare step reads what the config names as its check does (an elm_evaluate's
        # predictions file holding none): its refusals were a 400 `invalid_input` naming no field
        spec, config = prepare_run(kind, raw)
        check_inputs(spec.name, config, placed=True)
    except (InvalidInputError, NotFoundError) as exc:
        if isinstance(exc, InvalidConfigError | PathNotAllowedError):
            raise
        # what the config names is not there (or not usable): the request's config is what is wrong (422
        # naming the problem), not a resource of the API that was not found. At the field the kind's prepare
        # step or check placed it at (`TldrlabError.placed`), worded `field: ...` as every refusal of one
        # field is; a refusal it did not place is of the config as a whole
        placed = exc.details.get("errors")
        if isinstance(placed, list) and placed:
            raise InvalidConfigError.at_fields((tuple(e["loc"]), e["msg"]) for e in placed) from None
        raise InvalidConfigError.unplaced(exc.message) from None
    queue.ping()  # refuse before creating anything
    record = create_run(
        spec.name,
        config,
        seed=recorded_seed(config, seed),
        run_id=run_id,
        parent_id=parent_id,
        tags=tags,
        settings=settings,
        registry=registry,
        study=study_of(spec, config),
    )
    try:
        queue.enqueue(record.id)
    except Exception as exc:
        message = "failed: could not be queued (the job queue is unreachable)"
        registry.update(record.id, status=RunStatus.FAILED, message=message, error_code="service_unavailable")
        if isinstance(exc, ServiceUnavailableError):
            raise
        raise ServiceUnavailableError("the job queue is unreachable") from exc
    return registry.get(record.id)


def execute(
    run_id: str,
    *,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
    worker: str | None = None,
    config: BaseModel | None = None,
) -> dict[str, Any] | None:
    """Execute a registered run in this process (how workers run queued runs); exceptions propagate after the
    run recorded them. A returned dict is also written to the run's artifacts/result.json.

    `config` replaces the stored one for this execution only (a resume's allowed changes, e.g. quiet)."""
    registry = registry or open_registry(settings)
    record = registry.get(run_id)
    with execute_run(record, settings=settings, registry=registry, worker=worker) as run:
        config = config or validate_config(record.kind, run.config)
        spec = get_kind(record.kind)
        if spec.trial_execute is not None and record.sweep_trial is not None:
            function = load_target(spec.trial_execute)  # the same recipe, plus its sweep's pruning
        else:
            function = resolve_execute(record.kind)
        result = function(run, config)
        if result is not None:  # what the API returns for generate / score / evaluate requests
            path = run.artifacts_dir / "result.json"
            atomic_write_text(path, json.dumps(result, default=str, indent=2))
            run.add_artifact(path, kind="result")
    return result


REFUSE_ENDED_TRIAL = "tldrlab.sweep.trials:refuse_ended_trial"
"""A resume's check of a sweep trial's run (the sweep's modules import this one)."""


def _dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_config(record: RunRecord, spec: RunKind, changes: dict[str, Any] | None) -> BaseModel:
    """The config a resumed run continues with: the stored one, plus `changes` to the kind's resume_fields.

    ConflictError when the run completed; ConfigError when a change touches any other field.
    """
    if spec.resume_fields is None:
        raise InvalidInputError(f"runs of kind {spec.name!r} cannot be resumed")
    if record.status == RunStatus.COMPLETED:
        raise ConflictError(f"run {record.id} already completed; nothing to resume")
    changed = {k: v for k, v in _dotted(changes or {}).items() if v is not None}
    refused = sorted(k for k in changed if k not in spec.resume_fields)
    if refused:
        allowed = ", ".join(spec.resume_fields) or "none"
        raise ConfigError(
            f"a resumed run keeps the config it started with; cannot change {', '.join(refused)} "
            f"(may change: {allowed})"
        )
    merged: dict[str, Any] = dict(record.config)
    for dotted, value in changed.items():
        *parents, leaf = dotted.split(".")
        tree = merged
        for part in parents:
            tree[part] = dict(tree.get(part) or {})
            tree = tree[part]
        tree[leaf] = value
    return validate_config(spec.name, merged)


def is_follower() -> bool:
    """A non-main rank of a distributed launch (torchrun / accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


def check_inputs(kind: str, config: Any, *, placed: bool = False) -> None:
    """What every front end checks before it creates a run of `kind`, so a run that cannot start is refused
    instead of left behind failed: the kind's `must_exist` inputs are there, its `outputs` can be written,
    and its `check` passes (a prepared data directory, a model run that exists, a store that holds the
    concepts). The command line's pre-flight and the API's submit (`submit_run`) both come through here.

    `placed` (the API's submit): a refusal of one of the kind's `must_exist` or `outputs` fields is an
    InvalidConfigError whose `errors` entry is at that field (the 422's `loc: [name]`), worded as the command
    line words it (NotFoundError, exit 3 / InvalidInputError, exit 2, which it still gets). The kind's
    `check` places its refusals itself where it knows the field (`TldrlabError.placed`, `errors.refused_at`;
    a sweep's under `sweep.config`), so what it raises is left to the caller."""
    spec = get_kind(kind)
    resolve_dataset_refs(config)  # checked where it is: `tldrlab train --data dataset:<id>` said "not found"
    for name in spec.must_exist:
        if (path := getattr(config, name)) and not Path(path).exists():
            missing = NotFoundError(f"{name} not found (no such file or directory): {path}")
            raise _placed(name, missing) if placed else missing
    for name in spec.outputs:
        if path := getattr(config, name):
            try:
                check_writable(name, Path(path))
            except InvalidInputError as exc:
                if not placed:
                    raise
                raise _placed(name, exc) from None
    if spec.check:
        load_target(spec.check)(config)


def _placed(name: str, refusal: TldrlabError) -> InvalidConfigError:
    """`refusal` of the config's field `name` as the API answers it: its words as they are (they begin with
    the field's name already; `InvalidConfigError.at` would name it twice), its one `errors` entry at `name`.
    It was `InvalidConfigError.unplaced`, at `loc` [], leaving a client nothing to point at."""
    return InvalidConfigError(refusal.message, errors=[{"loc": [name], "msg": refusal.message}])


def check_writable(name: str, path: Path) -> None:
    """The output path `name` can be made by this process: its nearest existing directory is writable. One
    that is not failed inside the run, at its first write, with a PermissionError traceback and a failed run
    left behind. (A file standing where the path goes is the kind's `check` to word, or the write's.)"""
    here = path.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    if here.is_dir() and not os.access(here, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{name}: cannot write {path}: {here} is not writable")
    refuse_stored_state(name, path)


def refuse_stored_state(name: str, path: Path, settings: Settings | None = None) -> None:
    """An output file `name` is never written over what the home stores: a file in a run's directory, or a
    database of the home (the run registry, the sweeps', a store's). `elm evaluate --output` and `runs compare
    --plot` naming <home>/tldrlab.db replaced the registry with JSON or a PNG, and every later command failed.
    InvalidInputError before anything is written. (Other files of the home, such as the sequences file
    `lvm sequences` writes there by default, are rewritten as before.)"""
    settings = settings or get_settings()
    target = path.resolve()
    if not target.is_file():
        return
    home, runs_dir = settings.home.resolve(), settings.runs_dir.resolve()
    if target.is_relative_to(runs_dir):
        what = f"a file of run {target.relative_to(runs_dir).parts[0]}"
    elif target.is_relative_to(home) and _starts_with(target, SQLITE_HEADER):
        what = "a database of the tldrlab home"
    else:
        return
    raise InvalidInputError(f"{name}: {path} is {what}: write it somewhere else (it was left as it was)")


def _starts_with(path: Path, header: bytes) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(header)) == header
    except OSError:
        return False


def preflight(kind: str, config: Any) -> None:
    """What a command line checks before it creates a run, so a typo leaves no failed run behind:
    `check_inputs`, a W&B online mode's API key, then the kind's `local_check` of this machine (not on
    distributed followers)."""
    if is_follower():
        return
    check_inputs(kind, config)
    # the kinds that track have their W&B mode in their config: this machine's login is checked, as the run
    # starts W&B here (the API's runs start on a worker, whose environment the server does not know)
    if "wandb" in getattr(type(config), "model_fields", {}):
        check_online_credentials(wandb_mode(config.wandb))
    if (local_check := get_kind(kind).local_check) is not None:
        load_target(local_check)(config)


def check_resume_data(spec: RunKind, record: RunRecord, config: BaseModel) -> None:
    """A resume of a run whose data changed since it first started is refused here, before the run is
    touched (ConflictError naming the files): refused by the recipe's own check, the run had already been
    marked running and then failed, where it stays as it was and resumes once the data is back."""
    if spec.data_files is not None:
        files = load_target(spec.data_files)
        check_unchanged(Path(record.run_dir), record.id, lambda recorded: files(config, recorded))


@contextmanager
def preempt_on_sigterm() -> Iterator[None]:
    """SIGTERM (kill, timeout, a scheduler): a loop that polls `preempt` checkpoints after its step and the
    run is preempted. A second SIGTERM (`preempt.HARD_STOP_AFTER_S` or more later) stops the run at once as
    cancelled, as a worker does: without it, a kind whose work has no steps to stop between (an ingest, an
    evaluation, a scorer's training) ignored every SIGTERM. A Ctrl-C that a finalizer swallowed is raised
    again between steps (`preempt.keep_lost_interrupts`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first: list[float] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        if first and time.monotonic() - first[0] >= preempt.HARD_STOP_AFTER_S:
            raise RunCancelledError("stopped by a second SIGTERM")
        if not first:
            first.append(time.monotonic())
            logging.getLogger(__name__).warning("SIGTERM: stopping after the current step (again: stop now)")
            preempt.request_stop(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with preempt.keep_lost_interrupts():
            yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        preempt.reset()


class _Echo(logging.Handler):
    def __init__(self, echo: Callable[[str], object]) -> None:
        super().__init__(logging.INFO)
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, REPORTED_BY_CALLER, False):
            return  # a run's "run failed: ..." line: the command prints that error itself, once
        self.echo(record.getMessage())


@contextmanager
def echoed(echo: Callable[[str], object] | None, logger_name: str = "tldrlab.run") -> Iterator[None]:
    """While it is open, the lines runs log (logger `tldrlab.run`; one run's: `tldrlab.run.<id>`) also go to
    `echo`."""
    if echo is None:
        yield
        return
    handler = _Echo(echo)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def launch_run(
    kind: str,
    raw: dict[str, Any] | BaseModel | None = None,
    *,
    resume: str | None = None,
    seed: int | None = None,
    parent_id: str | None = None,
    tags: dict[str, Any] | None = None,
    settings: Settings | None = None,
    on_start: Callable[[RunRecord], None] | None = None,
    echo: Callable[[str], object] | None = None,
    echo_runs_inside: bool = True,
) -> Launched:
    """Prepare (or resume) a run of `kind` and execute it in this process (the CLI's way to run anything).

    With `resume`, `raw` holds only the changes asked for (checked against the kind's resume_fields). On a
    follower rank of a distributed launch the kind's `follower` runs instead and no run is created.
    `on_start` is called with the run's record before it executes (the CLI prints the run id); `echo`
    receives every line the run (and, with `echo_runs_inside`, the runs inside it) logs at INFO or above while
    it executes.
    """
    settings = settings or get_settings()
    registry = open_registry(settings)
    spec = get_kind(kind)
    changes = raw.model_dump(mode="json") if isinstance(raw, BaseModel) else dict(raw or {})
    if resume is not None and not resume.strip():  # `--resume ""` started a new run instead
        raise InvalidInputError("the run id to resume is empty: give a run id or a unique prefix of one")
    if is_follower():
        if spec.follower is None:
            raise ConfigError(f"runs of kind {spec.name!r} do not run distributed")
        config = (
            resume_config(registry.find(resume), spec, changes) if resume else prepare_run(kind, changes)[1]
        )
        load_target(spec.follower)(config)
        return Launched(registry.find(resume) if resume else _follower_record(spec), None)
    if resume:
        record = registry.find(resume)
        if get_kind(record.kind).name != spec.name:
            raise InvalidInputError(f"run {record.id} is of kind {record.kind}, not {spec.name}")
        if not Path(record.run_dir).is_dir():  # was `[os_error] No such file ...: <run_dir>/.run.lock`
            raise NotFoundError(f"run {record.id} cannot be resumed: {directory_gone(record)}")
        config = resume_config(record, spec, changes)
        # the inputs may have gone since the run stopped: refused here the run stays resumable, where the
        # job found them missing and the waiting run became a failed one
        preflight(spec.name, config)
        check_resume_data(spec, record, config)
        if record.sweep_trial is not None and spec.trial_execute is not None:
            # a sweep trial's run continues its study's trial, which its sweep may have ended since
            load_target(REFUSE_ENDED_TRIAL)(record)
    else:
        spec, config = prepare_run(kind, changes)
        record = create_run(
            spec.name,
            config,
            seed=recorded_seed(config, seed),
            parent_id=parent_id,
            tags=tags,
            settings=settings,
            registry=registry,
            study=study_of(spec, config),
        )
    if on_start is not None:
        on_start(record)
    # a run's own logger is `tldrlab.run.<id>`; the runs it starts log to siblings of it, not children
    echo_from = "tldrlab.run" if echo_runs_inside else f"tldrlab.run.{record.id}"
    with preempt_on_sigterm(), echoed(echo, echo_from):
        try:
            result = execute(record.id, settings=settings, registry=registry, config=config)
        except RunPreemptedError as exc:
            if spec.resume_fields is not None or _inside_a_live_run(registry, record):
                # queued: `--resume` continues it from its checkpoint, or the run that launched it (a
                # training's final evaluation) settles it as its own preemption says
                raise
            raise end_unresumable(registry, record.id, spec, exc) from exc
        finally:
            # ended for good (failed, cancelled, even completed): the runs an earlier attempt left waiting
            # for it (an lm_experiment's arms it had not reached) would read `queued` for good
            try:
                end_children_left_behind(registry, record.id)
            except Exception as exc:  # the run's own outcome is the one to report; a reconciler does this
                logging.getLogger(__name__).warning(
                    f"could not settle the runs left to run {record.id}: {type(exc).__name__}: {exc}"
                )
    return Launched(registry.get(record.id), result)


def _inside_a_live_run(registry: RunRegistry, record: RunRecord) -> bool:
    """Whether `record` was launched by a run executing now (its parent is running), not by a command."""
    if record.parent_id is None:
        return False
    try:
        return registry.get(record.parent_id).status is RunStatus.RUNNING
    except NotFoundError:
        return False


def end_unresumable(
    registry: RunRegistry, run_id: str, spec: RunKind, exc: RunPreemptedError
) -> RunCancelledError:
    """A run of a kind that does not resume, stopped (SIGTERM) in this process, ends cancelled, and so do the
    runs it started that went back to `queued` with it and do not resume either: preempted, they waited to be
    resumed, but no `--resume` takes a run of such a kind and no queue holds a command line's run, so they
    read `queued` for good. A sweep's trials stay queued: running the sweep again resumes them. The error
    the command prints says why the run ended."""
    reason = f"{exc.message}; runs of kind {spec.name} do not resume"
    message = f"cancelled: {reason}: start it again"
    cancel_queued(registry, run_id, message)
    end_unresumed_children(
        registry, run_id, f"cancelled: {reason}, and this run was part of {run_id}: start that again"
    )
    return RunCancelledError(message.removeprefix("cancelled: "))


def end_unresumed_children(registry: RunRegistry, run_id: str, message: str) -> None:
    """End `cancelled`, with `message`, the runs `run_id` started that a preemption put back to `queued` and
    that nothing will resume (`started_anew_by_parent`), and theirs in turn. Called when `run_id` itself
    will not continue them (it is cancelled, or starts again from scratch with runs of its own)."""
    pending = [run_id]
    while pending:
        current = pending.pop()
        for child in registry.list(parent_id=current, status=RunStatus.QUEUED.value, limit=None):
            if started_anew_by_parent(child):
                cancel_queued(registry, child.id, message)
                pending.append(child.id)


def inside_its_parent(record: RunRecord) -> bool:
    """A run its parent created and executes within its own execution (an experiment's arm, a training's
    final evaluation), which no queue holds: not a sweep's trial (its sweep puts it on the queue, and
    running the sweep again resumes it) nor a run someone asked for on its own that names the run it
    evaluates as its parent (`submitted_via`: the API's submits, `tldrlab eval RUN`)."""
    submitted = SUBMITTED_VIA in record.tags
    return record.parent_id is not None and not (record.sweep_trial is not None or submitted)


def started_anew_by_parent(record: RunRecord) -> bool:
    """A run inside its parent (`inside_its_parent`) that nothing continues once it stopped: its kind does
    not resume and its parent does not continue it (`RunKind.continued_by_parent`); the parent, when it
    runs again, starts the runs it needs anew."""
    return inside_its_parent(record) and not (resumes(record.kind) or continued_by_parent(record.kind))


def held_for_parent(record: RunRecord) -> bool:
    """A run inside its parent (`inside_its_parent`) that the parent continues when it resumes
    (`RunKind.continued_by_parent`: an lm_experiment's arms): stopped, it waits `queued` for the parent, off
    the queue."""
    return inside_its_parent(record) and continued_by_parent(record.kind)


def left_to_parent(record: RunRecord) -> bool:
    """A run its parent alone runs again, started anew or continued (`started_anew_by_parent`,
    `held_for_parent`): queued, it ends with a parent that ends for good (`end_children_left_behind`)."""
    return started_anew_by_parent(record) or held_for_parent(record)


def settle_inside_parent(record: RunRecord, gone: str) -> Settlement | None:
    """How an orphan that ran inside its parent settles, whichever reconciler finds it (a worker's, or a
    command line's or the API's views in a home with no worker), `gone` saying what became of its process:
    one started anew by its parent (`started_anew_by_parent`) ends `cancelled`, naming the parent; one its
    parent continues (`held_for_parent`) waits `queued`, off any queue, for the parent's resume, unless it
    was asked to cancel (the reconciler's own rule ends it cancelled). None for any other run."""
    if started_anew_by_parent(record):
        message = (
            f"cancelled: {gone} while it ran as part of run {record.parent_id}, which starts the runs it "
            "needs anew when it runs again"
        )
        return Settlement(RunStatus.CANCELLED, message, "cancelled")
    if held_for_parent(record) and not record.cancel_requested:
        message = f"queued: {gone}; run {record.parent_id}, which it is part of, continues it when it resumes"
        return Settlement(RunStatus.QUEUED, message)
    return None


ORPHAN_RULES = OrphanRules(
    resumable=resumes, left_to_parent=left_to_parent, inside_parent=settle_inside_parent
)
"""The rules of run kinds every reconciler applies (`tldrlab.runs.reconcile.reconcile_here`, the workers')."""


def end_children_left_behind(registry: RunRegistry, run_id: str) -> list[str]:
    """Called wherever a run's end is recorded (a worker, a command line, the API's cancel, a reconciler):
    once `run_id` ended for good, the queued runs left to it (`left_to_parent`) end `cancelled`, naming it
    and how it ended (`tldrlab.runs.reconcile.end_children_left_behind`); nothing while it may go on."""
    return _end_children_left_behind(registry, run_id, left_to_parent)


def _follower_record(spec: RunKind) -> RunRecord:
    """A stand-in record for a follower rank (it has no run of its own)."""
    return RunRecord(id="", kind=spec.name, status=RunStatus.COMPLETED, config={}, run_dir="", created_at=0.0)
