"""Creating and executing runs: the run directory, its manifest, metrics, logs and artifacts.

    with start_run("train", config, seed=0) as run:      # create + execute in one go
        run.log_metrics(step, loss=0.5)
        run.add_artifact(path)

`create_run` registers a queued run and writes its directory (used by queues); `execute_run(run_id)` moves it
to running and back to completed / failed / cancelled, whatever happens inside. The same code runs whether
the CLI, the API or a worker started it.

Run directory layout:
    manifest.json    config, versions, git commit, seed, device, precision, times, summary, artifacts
    metrics.jsonl    one JSON object per logged step
    log.jsonl        structured log lines
    checkpoints/     written by the trainer
    artifacts/       anything else worth keeping
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tldrlab.config import Settings, get_settings
from tldrlab.errors import (
    ConflictError,
    RunCancelledError,
    RunPreemptedError,
    TldrlabError,
    WriteRefusedError,
    refused_file,
    refused_write,
)
from tldrlab.logs import REPORTED_BY_CALLER, WARNINGS_LOGGER, json_file_handler
from tldrlab.runs import preempt
from tldrlab.runs.atomic import append_jsonl, atomic_write_json, read_jsonl, sha256_file
from tldrlab.runs.datasets import dataset_refs
from tldrlab.runs.ownership import Heartbeat, RunLock, new_owner
from tldrlab.runs.registry import RunRecord, RunRegistry, RunStatus, open_registry
from tldrlab.threads import IdleCpuWatch, threads_for_run

MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"
LOG = "log.jsonl"
EVALUATIONS = "evaluations"
"""A run's subdirectory holding the files of its later evaluations (`tldrlab eval RUN`), one directory per
evaluation run; its final evaluation's files stay next to its model."""
_VERSIONED = (
    "tldrlab",
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "numpy",
    "sentence-transformers",
)


def new_run_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the checkout tldrlab runs from, if it is one (None for an installed wheel)."""
    path = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def config_dict(config: BaseModel | dict[str, Any]) -> dict[str, Any]:
    return config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)


def create_run(
    kind: str,
    config: BaseModel | dict[str, Any],
    *,
    seed: int | None = None,
    run_id: str | None = None,
    parent_id: str | None = None,
    tags: dict[str, Any] | None = None,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
    study: str | None = None,
) -> RunRecord:
    """Register a queued run and write its directory with an initial manifest. `study`: the study the run
    opens when it starts (a sweep's, a search's), recorded in the registry's `study` column."""
    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    run_id = run_id or new_run_id(kind)
    run_dir = settings.ensure_home() / "runs" / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise ConflictError(f"run {run_id} already exists ({run_dir})") from None
    record = RunRecord(
        id=run_id,
        kind=kind,
        status=RunStatus.QUEUED,
        config=config_dict(config),
        run_dir=str(run_dir),
        created_at=time.time(),
        parent_id=parent_id,
        tags=tags or {},
        study=study,
    )
    manifest: dict[str, Any] = {
        "id": run_id,
        "kind": kind,
        "status": record.status.value,
        "config": record.config,
        "seed": seed,
        "parent_id": parent_id,
        "tags": record.tags,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "host": platform.node(),
        "created_at": record.created_at,
        "started_at": None,
        "ended_at": None,
        "device": None,
        "precision": None,
        "metrics": {},
        "artifacts": [],
        "message": None,
        # the registered data sets it reads (`tldrlab data register`, uploads), by id
        "datasets": dataset_refs(record.config, settings),
    }
    atomic_write_json(run_dir / MANIFEST, manifest)
    registry.insert(record)
    return record


class Run:
    """A run being executed: the handle code inside `execute_run` uses to report what it does."""

    def __init__(self, record: RunRecord, registry: RunRegistry) -> None:
        self.record = record
        self.registry = registry
        self.dir = Path(record.run_dir)
        self.logger = logging.getLogger(f"tldrlab.run.{record.id}")
        self._manifest: dict[str, Any] = read_manifest(self.dir)
        self._last_heartbeat = 0.0
        self._phase: str | None = None
        self._thread_watch = IdleCpuWatch()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def config(self) -> dict[str, Any]:
        return self.record.config

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def artifacts_dir(self) -> Path:
        path = self.dir / "artifacts"
        path.mkdir(exist_ok=True)
        return path

    # -- reporting -----------------------------------------------------------------------------------------
    def log(self, message: str, level: int = logging.INFO, **fields: Any) -> None:
        self.logger.log(level, message, extra={"fields": fields})

    def log_metrics(self, step: int, **metrics: Any) -> None:
        """Append one line to metrics.jsonl (and keep the latest values as the registry's metrics)."""
        append_jsonl(self.dir / METRICS, {"step": step, "time": time.time(), **metrics})

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.dir / METRICS)

    def set_summary(self, **metrics: Any) -> None:
        """Final or best metrics: stored in the manifest and the registry."""
        self._manifest["metrics"].update(metrics)
        self._write_manifest()
        self.registry.update(self.id, metrics=self._manifest["metrics"])

    def manifest_value(self, key: str) -> Any:
        """A top-level value of the run's manifest (None when absent)."""
        return self._manifest.get(key)

    def set_environment(
        self, *, device: str | None = None, precision: str | None = None, **extra: Any
    ) -> None:
        if device is not None:
            self._manifest["device"] = device
        if precision is not None:
            self._manifest["precision"] = precision
        self._manifest.update(extra)
        self._write_manifest()

    def add_artifact(self, path: Path | str, kind: str = "file") -> dict[str, Any]:
        """Record a file (or every file of a directory) with size and sha256, relative to the run dir."""
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        entries = []
        for file in files:
            rel = str(file.resolve().relative_to(self.dir.resolve())) if file.is_absolute() else str(file)
            entry = {"path": rel, "kind": kind, "size": file.stat().st_size, "sha256": sha256_file(file)}
            self._manifest["artifacts"] = [a for a in self._manifest["artifacts"] if a["path"] != rel]
            self._manifest["artifacts"].append(entry)
            entries.append(entry)
        self._write_manifest()
        return entries[0] if len(entries) == 1 else {"path": str(path), "files": entries}

    def heartbeat(
        self, progress: float | None = None, message: str | None = None, every_s: float = 2.0
    ) -> None:
        """Tell the registry we are alive (at most one write per `every_s` unless a message is set)."""
        now = time.monotonic()
        if message is None and now - self._last_heartbeat < every_s:
            return
        self._last_heartbeat = now
        self.registry.heartbeat(self.id, progress=progress, message=message)
        refitted = self._thread_watch.poll()
        if refitted is not None:  # other work started or stopped on these CPUs
            self.log("threads changed", threads=refitted.threads, idle_cpus=refitted.idle_cpus)
            changes = self._manifest.setdefault("threads_changes", [])
            changes.append({"at": round(time.time(), 3), "threads": refitted.threads})
            self._write_manifest()

    def set_phase(self, message: str, progress: float | None = None) -> None:
        """Say what the run is doing now (`training the tokenizer`, `training`, `evaluating`, ...): the
        registry's message follows the phase; written only when it changes."""
        if message == self._phase and progress is None:
            return
        self._phase = message
        self.heartbeat(progress=progress, message=message)

    def cancel_requested(self) -> bool:
        return self.registry.get(self.id).cancel_requested

    def check_cancelled(self) -> None:
        """Raise RunCancelledError if someone asked to cancel this run (call between steps); raise the
        Ctrl-C a finalizer swallowed (`preempt.keep_lost_interrupts`)."""
        preempt.raise_lost_interrupt()
        if self.cancel_requested():
            raise RunCancelledError("run cancelled on request")

    def _write_manifest(self) -> None:
        atomic_write_json(self.dir / MANIFEST, self._manifest)

    def _finish(self, status: RunStatus, message: str, error_code: str | None = None) -> None:
        now = time.time()
        self._manifest.update(status=status.value, ended_at=now, message=message, error_code=error_code)
        self._write_manifest()
        self._record_end(status, message, error_code, now)

    def _finish_failed(self, status: RunStatus, message: str, error_code: str) -> None:
        """`_finish` for a run that is failing already: what cannot be recorded (a full disk takes the
        manifest, and the registry's SQLite file when it shares the disk) is a warning, and the run's own
        error still reaches the caller; it used to be replaced by the recording's ("database or disk is
        full") traceback."""
        now = time.time()
        self._manifest.update(status=status.value, ended_at=now, message=message, error_code=error_code)
        self._record_anyway("end", lambda: self._record_end(status, message, error_code, now))

    def _finish_preempted(self, message: str) -> None:
        """The run back to `queued` (its worker re-enqueues it), recorded as `_finish_failed` records: what
        cannot be (a full disk) is a warning, so the RunPreemptedError still reaches the worker; the
        recording's OSError replaced it, and the worker took the run for failed."""
        self._manifest.update(status=RunStatus.QUEUED.value, message=message)
        self._record_anyway(
            "preemption",
            lambda: self.registry.update(
                self.id, status=RunStatus.QUEUED, message=message, heartbeat_at=time.time()
            ),
        )

    def _record_anyway(self, event: str, record_row: Callable[[], None]) -> None:
        """Write the manifest, then the registry row (`record_row`), each failure a warning: the run's own
        error (or preemption) is the one its caller must get."""
        for what, record in (("manifest", self._write_manifest), ("registry row", record_row)):
            try:
                record()
            except Exception as exc:
                self.logger.warning(
                    f"could not record the run's {event} in its {what}: {type(exc).__name__}: {exc}"
                )

    def _record_end(self, status: RunStatus, message: str, error_code: str | None, now: float) -> None:
        # a completed run is at 100 %, whatever its last (rate-limited) heartbeat said
        done = {"progress": 1.0} if status is RunStatus.COMPLETED else {}
        self.registry.update(
            self.id,
            status=status,
            ended_at=now,
            message=message,
            error_code=error_code,
            heartbeat_at=now,
            status_at=now,
            **done,
        )


def read_manifest(run_dir: Path | str) -> dict[str, Any]:
    """The run's manifest. OSError when it cannot be read, ValueError when it is not a JSON object: a list
    was a TypeError from `dict()`, which the callers taking an unreadable manifest as none did not catch."""
    import json

    path = Path(run_dir) / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not a JSON object")
    return manifest


@contextmanager
def execute_run(
    run: RunRecord | str,
    *,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
    worker: str | None = None,
) -> Iterator[Run]:
    """Mark the run running, yield a `Run`, and record how it ended.

    Exceptions propagate after being recorded: TldrlabError -> failed with its code; RunCancelledError and
    KeyboardInterrupt -> cancelled; anything else -> failed as internal_error.
    """
    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    record = registry.get(run) if isinstance(run, str) else run
    # The run directory's lock first: while another live process executes this run, nothing is touched.
    owner = new_owner()
    lock = RunLock.acquire(record.run_dir, owner)
    heartbeat: Heartbeat | None = None
    try:
        started = time.time()
        # A worker that claimed the run (status running, its name) already counted this attempt.
        claimed = record.status is RunStatus.RUNNING and worker is not None and record.worker == worker
        # Executing a run that ended (`--resume` of a cancelled or failed run) is a new attempt someone asked
        # for: the cancel request that ended the last one must not end this one at its first check, and a
        # running run has no end time or error yet. Only an ended run's request is dropped; one made while
        # it is queued or running stays honoured.
        fresh_attempt: dict[str, Any] = {}
        if record.status.finished:
            fresh_attempt = {"cancel_requested": False, "ended_at": None, "error_code": None}
        registry.update(
            record.id,
            **fresh_attempt,
            status=RunStatus.RUNNING,
            started_at=record.started_at or started,
            heartbeat_at=started,
            worker=worker or f"{platform.node()}:{os.getpid()}",
            owner=owner,
            attempts=record.attempts + (0 if claimed else 1),
            message="running",
        )
        # Alive is what the lock says; the registry's heartbeat comes from this thread, not from the job's
        # main thread, which may be busy (loading data) far longer than a worker's stale threshold.
        heartbeat = Heartbeat(registry.db.url, record.id, owner, settings.run_heartbeat_s).start()
        with _recording(registry.get(record.id), registry) as handle:
            yield handle
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        lock.release()


def _refused(handle: Run, kind: type[WriteRefusedError], exc: BaseException) -> WriteRefusedError:
    # named by the run's directory, or by the file refused where that is elsewhere (a run writing into another
    # run's directory or a place its config names): "read-only file system" of the run's directory, when
    # another mount refused the write, sent the user to fix the wrong disk
    file = refused_file(exc)
    elsewhere = file is not None and not file.resolve().is_relative_to(handle.dir.resolve())
    where = f"writing {file}" if elsewhere else f"({handle.dir})"
    return kind.writing(where, resume_hint(handle.record))


SWEEP_RESUME_HINT = ", then run the sweep again: it resumes the study, whose finished trials are kept"
"""What a sweep's refused write (its study database's, its trial run's) tells the user to do once the cause
is fixed: the study keeps its finished trials, and running the same sweep again resumes it. Worded here, below
`tldrlab.sweep`, since a trial run words its own refusals with it (`resume_hint`)."""


def resume_hint(record: RunRecord) -> str:
    """What a run's refused write tells the user to do once the cause is fixed. A run keeps its checkpoints:
    resume it. Not a sweep trial's run: its sweep tells the study the trial failed, so no sweep resumes that
    run, and running the sweep again asks a new trial in its place. Decided here, where the refusal is worded,
    so the trial run's own record (its registry row and manifest) says what its sweep says."""
    if (number := record.sweep_trial) is not None:
        return f"{SWEEP_RESUME_HINT} (trial {number} stays failed: a new trial takes its place)"
    return f", then resume the run ({record.id}) or start it again"


@contextmanager
def _recording(record: RunRecord, registry: RunRegistry) -> Iterator[Run]:
    """The `Run` handle of a run marked running, and how it ended recorded in its manifest and row."""
    started = time.time()
    handle = Run(record, registry)
    # the thread count this run computes with (fitted to the CPUs idle now), recorded with the run
    threads = threads_for_run()
    handle._manifest.update(
        status="running", started_at=handle._manifest.get("started_at") or started, threads=threads.as_dict()
    )
    handle._write_manifest()
    file_handler = json_file_handler(handle.dir / LOG)
    handle.logger.addHandler(file_handler)
    handle.logger.setLevel(logging.DEBUG)
    warnings_logger = logging.getLogger(WARNINGS_LOGGER)  # Python warnings raised during the run, if captured
    warnings_logger.addHandler(file_handler)
    try:
        try:
            yield handle
        except RunPreemptedError as exc:
            # Preempted (its worker is stopping) after someone asked to cancel it (a cancelled sweep's trial
            # in a worker the sweep stops): it ends cancelled, since back in the queue no worker would ever
            # claim it (cancelled runs are not claimable) and it would read `queued` for good.
            if handle.cancel_requested():
                raise RunCancelledError(f"run cancelled on request ({exc.message})") from exc
            raise
    except RunPreemptedError as exc:
        # Not a failure: the run checkpointed and goes back to the queue (the worker re-enqueues it).
        handle.log("run preempted; checkpointed", level=logging.WARNING)
        handle._finish_preempted(f"preempted: {exc.message}; waiting to be resumed")
        raise
    except (RunCancelledError, KeyboardInterrupt) as exc:
        handle.log("run cancelled", level=logging.WARNING)
        # a bare KeyboardInterrupt (Ctrl-C outside a training loop) says nothing: an exception is never falsy,
        # so `exc or ...` recorded "cancelled: " with nothing after it
        handle._finish_failed(RunStatus.CANCELLED, f"cancelled: {str(exc) or 'interrupted'}", "cancelled")
        raise
    except TldrlabError as exc:
        handle.logger.error(  # a command prints the error itself; a worker's console shows this line
            f"run failed: {exc.message}", extra={"fields": {"code": exc.code}, REPORTED_BY_CALLER: True}
        )
        handle._finish_failed(RunStatus.FAILED, f"failed: {exc.message}", exc.code)
        raise
    except BaseException as exc:
        refused = refused_write(exc) if isinstance(exc, Exception) else None
        if refused is not None:
            # Whichever write the system refused (a checkpoint's safetensors or torch file, a JSON file, the
            # registry's database) for a full disk, a file-size limit or a read-only file system, the run
            # failed for a cause the user fixes, not for a bug: a one-line error with its own code, the
            # traceback kept in the run's log only.
            error = _refused(handle, refused, exc)
            handle.logger.error(
                f"run failed: {error.message}",
                exc_info=exc,
                extra={"fields": {"code": error.code}, REPORTED_BY_CALLER: True},
            )
            handle._finish_failed(RunStatus.FAILED, f"failed: {error.message}", error.code)
            raise error from exc
        handle.logger.exception("run failed with an unexpected error")
        handle._finish_failed(RunStatus.FAILED, f"failed: {type(exc).__name__}: {exc}", "internal_error")
        raise
    else:
        summary = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(handle._manifest["metrics"].items())[:4]
        )
        try:
            handle._finish(RunStatus.COMPLETED, f"completed{': ' + summary if summary else ''}")
        except Exception as exc:
            refused = refused_write(exc)
            if refused is None:
                raise
            raise _refused(handle, refused, exc) from exc
    finally:
        handle.logger.removeHandler(file_handler)
        warnings_logger.removeHandler(file_handler)
        file_handler.close()


@contextmanager
def start_run(
    kind: str,
    config: BaseModel | dict[str, Any],
    *,
    seed: int | None = None,
    run_id: str | None = None,
    parent_id: str | None = None,
    tags: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> Iterator[Run]:
    """Create a run and execute it in this process."""
    settings = settings or get_settings()
    registry = open_registry(settings)
    record = create_run(
        kind,
        config,
        seed=seed,
        run_id=run_id,
        parent_id=parent_id,
        tags=tags,
        settings=settings,
        registry=registry,
    )
    with execute_run(record, settings=settings, registry=registry) as run:
        yield run
