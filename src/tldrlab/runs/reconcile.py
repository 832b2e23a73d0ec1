"""Orphaned runs: `running` in the registry while the process that executed them is gone (killed with
SIGKILL, out of memory, the machine rebooted), so nothing will ever record how they ended.

An orphan is a running run whose heartbeat is older than a threshold *and* whose owner is dead: nobody holds
its run directory's lock (`tldrlab.runs.ownership`; the kernel drops it however the process died). A stale
heartbeat alone is not enough: a stopped or busy owner keeps its run.

Two reconcilers settle orphans with the functions here, each with the outcome that fits it:

- a worker (`tldrlab.service.worker.reconcile`) requeues them on its queue (the job resumes from its last
  checkpoint), or fails them past `max_attempts`;
- a command line that shows runs (`tldrlab runs list | show`), and the API's run views
  (`tldrlab.service.state.settle_orphans_here`, at most once per heartbeat interval), settle the orphans a
  process of this machine left behind (`reconcile_here`), so a home with no worker does not show a killed
  run `running` for good: a run of a resumable kind waits for `--resume` (`queued`, as a preempted run
  does), any other fails with `worker_lost`. Runs submitted through the API are left to the workers, whose
  queue they belong to; so is every orphan while any worker is alive (their callers check): a worker
  requeues and resumes it, where settled here first it would wait for a `--resume`.

A run that ran inside its parent (an experiment's arm, a final evaluation) settles by one rule in both,
`OrphanRules.inside_parent`: it is the parent's to run again, not a queue's nor a `--resume`'s.

Both mark a settled run in the registry until its manifest says so too (`manifest_behind`): a run directory
that refuses the write at that moment (a full disk, an immutable directory) would otherwise leave the
manifest `running` for good, so every later pass (`repair_manifests`) writes it once it can.

A run its parent alone runs again (`OrphanRules.left_to_parent`: an experiment's arm, an lm_experiment's arm
it continues) waits `queued`, off any queue, for that parent; once the parent ended for good (failed past its
attempts, cancelled, completed, deleted) nothing would ever run it, so `end_children_left_behind` cancels it,
naming the parent and how it ended. Whoever records a parent's end calls it; both reconcilers also look for
such runs on every pass (`end_children_of_ended_parents`: a parent deleted, or ended by a process that died
before it could).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tldrlab.errors import NotFoundError
from tldrlab.runs.atomic import atomic_write_json
from tldrlab.runs.ownership import owner_alive
from tldrlab.runs.registry import SUBMITTED_VIA, RunRecord, RunRegistry, RunStatus
from tldrlab.runs.run import MANIFEST, read_manifest

log = logging.getLogger("tldrlab.runs")

STALE_BEATS = 3
"""`reconcile_here` settles a run whose heartbeat missed this many of its owner's beats (and whose lock is
free): the lock decides on one machine, the heartbeat only guards against a file system without locks."""

SETTLE_LOCK_WAIT_S = 0.5
"""How long a view's settle waits for a write lock another process holds (its registry is opened with this,
`open_registry(lock_wait_s=...)`): settling is the view's side job, left to the next pass when the database
is busy, where the registry's usual 30 s busy timeout held the view that long."""


@dataclass(frozen=True)
class Settlement:
    """How a reconciler settles one orphan."""

    status: RunStatus
    message: str
    error_code: str | None = None


@dataclass(frozen=True)
class OrphanRules:
    """What reconcilers need to know of run kinds, which sit above this module: `tldrlab.launch.ORPHAN_RULES`
    is the one set every reconciler applies."""

    resumable: Callable[[str], bool]
    """Whether runs of a recorded kind name resume (`tldrlab.kinds.resumes`)."""
    left_to_parent: Callable[[RunRecord], bool]
    """Whether a queued run waits for its parent alone to run it (started anew or continued by it)."""
    inside_parent: Callable[[RunRecord, str], Settlement | None]
    """How an orphan that ran inside its parent settles, given what became of its process ("its worker W
    stopped responding", "its process P ended"): cancelled when its parent starts such runs anew, `queued`
    off any queue when its parent continues it; None for any other run, which the reconciler settles by its
    own rule. The one rule for a worker's reconcile and `reconcile_here` (`launch.settle_inside_parent`)."""


def update_manifest(run_dir: str | Path, **fields: Any) -> None:
    """Mirror a registry change made outside the run's own handle into its manifest."""
    try:
        manifest = read_manifest(run_dir)
    except (OSError, ValueError):
        return
    manifest.update(fields)
    atomic_write_json(Path(run_dir) / MANIFEST, manifest)


def orphaned_runs(registry: RunRegistry, stale_before: float) -> list[RunRecord]:
    """Running runs whose heartbeat is older than `stale_before` and whose owner is dead."""
    return [r for r in registry.stale_running(stale_before) if not owner_alive(r.run_dir)]


def settle_orphan(
    registry: RunRegistry,
    record: RunRecord,
    stale_before: float,
    status: RunStatus,
    message: str,
    error_code: str | None = None,
) -> bool:
    """Compare-and-set an orphan, still stale, to `status` and mirror it into its manifest: True for the one
    reconciler that wins (another may be settling it at the same moment)."""
    if not registry.settle_stale(record.id, stale_before, status, message, error_code):
        return False
    log.warning(message, extra={"fields": {"run_id": record.id}})
    ended = {"ended_at": time.time()} if status.finished else {}
    # raises when the run directory refuses the write: the registry keeps the run marked manifest_behind,
    # and the next pass's `repair_manifests` writes it
    update_manifest(record.run_dir, status=status.value, message=message, error_code=error_code, **ended)
    registry.manifest_caught_up(record.id)
    return True


def cancel_queued(registry: RunRegistry, run_id: str, message: str) -> bool:
    """Compare-and-set a queued run to `cancelled` with `message` and mirror it into its manifest: True when
    it was queued. Marked `manifest_behind` in the same statement, so a manifest that refuses the write is
    caught up by a later pass (`repair_manifests`) instead of reading `queued` for good."""
    fields: dict[str, Any] = {"message": message, "error_code": "cancelled", "ended_at": time.time()}
    if not registry.transition(run_id, (RunStatus.QUEUED,), RunStatus.CANCELLED, **fields, manifest_behind=1):
        return False
    try:
        update_manifest(registry.get(run_id).run_dir, status=RunStatus.CANCELLED.value, **fields)
    except OSError as exc:  # cancelled all the same: the next reconcile pass writes the manifest
        log.warning(f"run {run_id} cancelled, its manifest not yet: {_reason(exc)}")
        return True
    registry.manifest_caught_up(run_id)
    return True


def cancel_with_descendants(registry: RunRegistry, record: RunRecord, message: str | None = None) -> None:
    """Cancel a run and the unfinished runs it started (the API's `POST /runs/{id}/cancel`, `tldrlab runs
    cancel`): a queued one at once, a running one by its request (read between steps). A sweep's trial or an
    experiment's arm executes inside its parent's execution, so the parent stops only once its running child
    has: the request goes down to every descendant (a queued one, an arm waiting for its experiment's
    resume, is cancelled naming the run it was part of). `message`: what a queued run ends with (by default
    whether it had started: a run put back on the queue after an attempt did, its checkpoints are kept)."""
    if message is None:
        message = (
            "cancelled before it started"
            if record.attempts == 0
            else f"cancelled while it waited to run again (after {record.attempts} attempt"
            f"{'s' if record.attempts > 1 else ''}; its files are kept)"
        )
    registry.request_cancel(record.id)
    if not cancel_queued(registry, record.id, message):
        # only while it runs: a run that ended meanwhile keeps the message it ended with
        waiting = "cancel requested; stopping after the current step"
        registry.transition(record.id, (RunStatus.RUNNING,), RunStatus.RUNNING, message=waiting)
    for child in registry.unfinished_children(record.id):
        cancel_with_descendants(
            registry, child, f"cancelled: run {record.id}, which it is part of, was cancelled"
        )


def _ended(registry: RunRegistry, run_id: str) -> str | None:
    """How the run `run_id` ended for good ("failed", "was cancelled", ...), or None while it may go on
    (queued or running)."""
    try:
        record = registry.get(run_id)
    except NotFoundError:
        return "was deleted"
    ends = {
        RunStatus.COMPLETED: "completed without it",
        RunStatus.FAILED: "failed",
        RunStatus.CANCELLED: "was cancelled",
    }
    return ends.get(record.status)


def end_children_left_behind(
    registry: RunRegistry, run_id: str, left_to_parent: Callable[[RunRecord], bool]
) -> list[str]:
    """Once `run_id` ended for good (or is gone), cancel the queued runs it alone would have run again
    (`left_to_parent`), naming it and how it ended, and theirs in turn: nothing else runs them, and they read
    `queued` for good. Nothing while `run_id` is queued or running (a retry, a resume continues them).
    Compare-and-set, so a run its parent took meanwhile (a resume racing this) keeps running. Returns the
    ids cancelled."""
    cancelled: list[str] = []
    pending = [run_id]
    while pending:
        parent_id = pending.pop()
        end = _ended(registry, parent_id)
        if end is None:
            continue
        for child in registry.list(parent_id=parent_id, status=RunStatus.QUEUED.value, limit=None):
            if not left_to_parent(child):
                continue  # the queue's (an API run, a sweep's trial) or a `--resume`'s
            message = f"cancelled: run {parent_id}, which it is part of and which alone would run it, {end}"
            if cancel_queued(registry, child.id, message):
                log.warning(message, extra={"fields": {"run_id": child.id}})
                cancelled.append(child.id)
                pending.append(child.id)
    return cancelled


def end_children_of_ended_parents(
    registry: RunRegistry, left_to_parent: Callable[[RunRecord], bool]
) -> tuple[list[str], list[tuple[str, str]]]:
    """`end_children_left_behind` for every parent that ended for good or is gone and still has a queued
    run left to it: a parent deleted, or ended by a process that died before it settled its runs (or by a
    version without this rule). A reconciler's pass; never raises. Returns the ids cancelled and (run id,
    why) of those that could not be."""
    cancelled: list[str] = []
    failed: list[tuple[str, str]] = []
    try:
        waiting = [r for r in registry.queued_children_of_ended() if left_to_parent(r)]
    except Exception as exc:  # an unreadable database: the caller reports it
        return cancelled, [("", _reason(exc))]
    for parent_id in dict.fromkeys(r.parent_id for r in waiting if r.parent_id):
        try:
            cancelled.extend(end_children_left_behind(registry, parent_id, left_to_parent))
        except Exception as exc:  # one run directory refusing the write stops none of the others
            failed.extend((r.id, _reason(exc)) for r in waiting if r.parent_id == parent_id)
    return cancelled, failed


def repair_manifests(registry: RunRegistry) -> list[tuple[str, str]]:
    """Mirror into their manifests the status of runs a reconciler settled while their run directory refused
    the write (the registry marks them): without this such a manifest said `running` for good. Returns
    (run id, why) of each manifest still not writable; it stays marked for the next pass."""
    failed: list[tuple[str, str]] = []
    try:
        behind = registry.manifests_behind()
    except Exception as exc:  # an unreadable database: the caller reports it
        return [("", _reason(exc))]
    for record in behind:
        try:
            manifest_path = Path(record.run_dir) / MANIFEST
            if record.status is not RunStatus.RUNNING and record.cleaned_at is None:
                if not manifest_path.is_file():
                    # another machine's run directory, or one not mounted here right now: its manifest
                    # is out of reach, not caught up; leave the mark for a pass that can reach it
                    continue
                settled = {
                    "status": record.status.value,
                    "message": record.message,
                    "error_code": record.error_code,
                }
                manifest = read_manifest(record.run_dir)
                if any(manifest.get(key) != value for key, value in settled.items()):
                    ended = {"ended_at": record.ended_at} if record.status.finished else {}
                    update_manifest(record.run_dir, **settled, **ended)
                    log.info(f"run {record.id}: manifest brought up to date ({record.status.value})")
            # running again (resumed: its own handle wrote the manifest), or cleaned away: nothing lags
            registry.manifest_caught_up(record.id)
        except Exception as exc:  # still unwritable: the next pass tries again
            failed.append((record.id, _reason(exc)))
    return failed


def owner_host(record: RunRecord) -> str | None:
    """The machine of the process that last executed the run (`host:pid:token`, or `host:pid` of a worker)."""
    executor = record.owner or record.worker
    return executor.rsplit(":", 2)[0] if executor and executor.count(":") >= 1 else None


@dataclass(frozen=True)
class Reconciled:
    """What `reconcile_here` did, for the view that asked: it lists the runs whatever happened here."""

    settled: list[tuple[str, str]] = field(default_factory=list)
    """(run id, new status) of each orphan settled."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(run id, why) of each orphan that could not be settled ("" for the id when looking for them failed)."""

    @property
    def warning(self) -> str | None:
        """One line saying which runs could not be settled and why; None when nothing failed."""
        if not self.failed:
            return None
        ids = [run_id for run_id, _ in self.failed if run_id]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        # a read-only database refuses every orphan alike: its reason once
        reasons = "; ".join(dict.fromkeys(why for _, why in self.failed))
        what = f"{len(ids)} run(s) whose process died ({shown})" if ids else "runs whose process died"
        return f"could not settle {what}, so they may still read running: {reasons}"


def _reason(exc: Exception) -> str:
    # one line: a PostgreSQL error's message spans several
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def reconcile_here(registry: RunRegistry, *, heartbeat_s: float, rules: OrphanRules) -> Reconciled:
    """Settle the orphans a process of this machine left behind (not the API's runs: its workers requeue
    those): a run of a kind `rules.resumable` says resumes waits for `--resume` (queued), another fails
    (`worker_lost`); one asked to cancel ends cancelled; one that ran inside its parent settles as a worker's
    reconcile settles it (`rules.inside_parent`). Then the queued runs left to a parent that ended for good
    are cancelled (`end_children_of_ended_parents`).

    Views call this before they read the registry, so it never raises: an orphan that cannot be settled (a
    read-only home or database, a manifest that cannot be written) is reported in `failed` and the others
    are still settled; the view shows the runs as they are, with `Reconciled.warning`."""
    stale_before = time.time() - STALE_BEATS * heartbeat_s
    here = platform.node()
    done = Reconciled()
    try:
        orphans = orphaned_runs(registry, stale_before)
    except Exception as exc:  # an unreadable database: the view reports it in its own words
        done.failed.append(("", _reason(exc)))
        return done
    # first the manifests earlier passes could not write (one failing now is reported once, below)
    behind = repair_manifests(registry)
    for record in orphans:
        if owner_host(record) != here or record.tags.get(SUBMITTED_VIA) == "api":
            continue
        process = record.owner or record.worker
        if record.cancel_requested:
            status, code = RunStatus.CANCELLED, "cancelled"
            message = f"cancelled: its process {process} ended after the run was asked to cancel"
        elif rules.resumable(record.kind):
            status, code = RunStatus.QUEUED, None
            message = (
                f"interrupted: its process {process} ended without finishing (killed?); "
                f"--resume {record.id} continues it from its last checkpoint"
            )
        else:
            status, code = RunStatus.FAILED, "worker_lost"
            message = f"failed: its process {process} ended without finishing (killed?)"
        inside = rules.inside_parent(record, f"its process {process} ended")
        if inside is not None:  # the parent's to run again (an experiment's arm, a final evaluation)
            status, code, message = inside.status, inside.error_code, inside.message
        try:
            if settle_orphan(registry, record, stale_before, status, message, code):
                done.settled.append((record.id, status.value))
        # whatever refuses the write (a read-only file system or database file, a database in read-only
        # transactions, an immutable run directory) must not stop the view that asked
        except Exception as exc:
            done.failed.append((record.id, _reason(exc)))
    ended, refused = end_children_of_ended_parents(registry, rules.left_to_parent)
    done.settled.extend((run_id, RunStatus.CANCELLED.value) for run_id in ended)
    done.failed.extend(refused)
    failing = {run_id for run_id, _ in done.failed}
    done.failed.extend(item for item in behind if item[0] not in failing)
    return done
