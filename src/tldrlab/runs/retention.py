"""Retention: what `tldrlab runs prune`, `DELETE /runs/{id}` and the periodic cleanup of `tldrlab serve`
delete, by the policy in the settings (`tldrlab.config.RetentionPolicy`, `[retention]` in tldrlab.toml).

    names = kind_names_by_recorded_name()  # tldrlab.kinds: old kind names (eval) -> current ones (evaluate)
    report = prune(kind_names=names)                   # one pass by the configured policy
    report = prune(kind_names=names, dry_run=True)     # what it would delete now (cleanup_dry_run events)
    delete_run("train-2026...", kind_names=names)      # one run and its evaluations now (refused while
                                                       # referenced, or it or an evaluation is unfinished)

A pass, in order:

1. **Runs.** A finished run is a candidate when its status and kind are in the policy, it ended more than
   `older_than_days` ago, and nothing keeps it: an alias points at it, another run references it (as its
   parent: an evaluation's training run, an experiment's or sweep's children; or in its config: `model_run`,
   `from_pretrained`, a tokenizer directory, `run:<id>/...`), it is among the best `keep_best` completed runs
   of its kind (and `group_by_tag` value) by `metric`, or a live process holds its lock. Tokenizer runs are
   candidates once no run references them, whatever their age, and wait `tokenizers_unreferenced_days`.
   A run recorded under an old kind name (`eval`) counts as a run of its kind (`evaluate`) throughout: the
   callers pass that mapping (`kind_names`) from the kind registry, which sits above this module.
   A run and its evaluations (its children of the `DERIVED_KINDS`: evaluations, generations, scores) are one
   unit: a run one of them still needs (queued or running, referenced itself, or among the `keep_best` of its
   kind) is kept, and a deleted run takes them with it (rows and directories), so no evaluation is left
   pointing at a run that is gone.
2. **Grace period.** A candidate is first *marked* (`cleanup_marked_at`); a later pass deletes it once it
   stayed a candidate for `grace_period_s` (a run that became referenced meanwhile is unmarked). With a grace
   period of 0 it goes at once.
3. **Delete or clean.** Without uploads (`upload_runs` off) the run's directory and registry row are deleted.
   With uploads on, only a run whose archive the file store holds intact (uploaded now if it was not yet) is
   *cleaned*: its directory goes, its row and archive stay, and naming it restores it.
4. **Checkpoints** of the finished runs that stay: step checkpoints beyond the newest
   `checkpoints_keep_last` go (`best` and other named checkpoints stay).
5. **Caches** under `<home>/cache` (embeddings, converted models): least recently used files go until the
   caches fit `cache_max_bytes` and the file system has `cache_min_free_bytes` free.

Every action is a `tldrlab.runs.cleanup_events` event with the bytes and files it measured just before
deleting; a dry run records what it would delete and changes nothing (no marks either).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tldrlab.config import RetentionPolicy, Settings, get_settings
from tldrlab.errors import ConflictError, RunOwnedError, TldrlabError
from tldrlab.report import Report
from tldrlab.runs.aliases import aliased_run_ids
from tldrlab.runs.archive import upload_run
from tldrlab.runs.cleanup_events import Action, CleanupEvent, EventType, record_event
from tldrlab.runs.filestore import DirectoryFileStore, HttpFileStore, open_file_store
from tldrlab.runs.ownership import LOCK_FILE, RunLock, new_owner, owner_alive
from tldrlab.runs.registry import (
    DERIVED_KINDS,
    KindNames,
    RunRecord,
    RunRegistry,
    RunStatus,
    current_kind,
    derived_children,
    open_registry,
)
from tldrlab.runs.run import EVALUATIONS

log = logging.getLogger("tldrlab.cleanup")

CACHE_SUBDIR = "cache"
_STEP = re.compile(r"^step-0*(\d+)(\.\w+)?$")


@dataclass
class Usage:
    bytes: int = 0
    files: int = 0


def disk_usage(path: Path) -> Usage:
    """Bytes and files under `path` (symbolic links counted as links, never followed)."""
    usage = Usage()
    if path.is_symlink() or path.is_file():
        usage.bytes, usage.files = path.lstat().st_size, 1
        return usage
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]:
            try:
                usage.bytes += (Path(root) / name).lstat().st_size
                usage.files += 1
            except OSError:
                continue
    return usage


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def size_text(n: float) -> str:
    """Bytes for people: `512 B`, `1.5 MB` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@dataclass
class Decision:
    """What a pass decided for one target."""

    target: str
    action: Action
    reason: str
    kind: str | None = None
    status: str = "planned"
    """`done`, `dry_run`, `failed`, `pending` (marked, due at `due_at`) or `kept`."""
    bytes: int = 0
    files: int = 0
    due_at: float | None = None
    error: str | None = None
    children: list[str] = field(default_factory=list)
    """The run's evaluations (generations, scores) deleted with it: `derived_children`."""

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "children": list(self.children)}

    def what(self) -> str:
        """`run X`, or `run X and its 2 evaluations (evaluate-a, evaluate-b)`."""
        if not self.children:
            return f"run {self.target}"
        shown = ", ".join(self.children[:5]) + (", ..." if len(self.children) > 5 else "")
        return f"run {self.target} and its {_count(len(self.children), 'evaluation')} ({shown})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@dataclass
class PruneReport:
    """One pass: what was deleted (or would be), what waits for its grace period, and what is kept why."""

    dry_run: bool
    actions: list[Decision] = field(default_factory=list)
    pending: list[Decision] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    unmarked: set[str] = field(default_factory=set)
    """Pending targets a dry run left unmarked (it marks nothing): its report says it would mark them."""

    @property
    def bytes_freed(self) -> int:
        return sum(d.bytes for d in self.actions if d.status in ("done", "dry_run"))

    @property
    def files_deleted(self) -> int:
        return sum(d.files for d in self.actions if d.status in ("done", "dry_run"))

    def report(self) -> Report:
        """One line per deletion (done, would be done or failed) and per marked run, then the totals."""
        report = Report()
        for d in self.actions:
            state = {"dry_run": "would", "done": "done", "failed": "FAILED"}.get(d.status, d.status)
            extra = f": {d.error}" if d.error else ""
            with_them = f" with its {_count(len(d.children), 'evaluation')}" if d.children else ""
            line = (
                f"{state:6} {d.action:11} {d.target}{with_them}  {size_text(d.bytes)}, {d.files} files  "
                f"({d.reason})"
            )
            report.blocks.append(line + extra)
        for d in self.pending:
            due = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.due_at)) if d.due_at else "-"
            state = "would mark" if d.target in self.unmarked else "marked"
            report.blocks.append(f"{state} {d.action:11} {d.target}  due {due}  ({d.reason})")
        report.blocks.append(
            f"{'would free' if self.dry_run else 'freed'} {size_text(self.bytes_freed)} in "
            f"{self.files_deleted} files; {len(self.pending)} run(s) waiting for their grace period; "
            f"{len(self.kept)} kept"
        )
        return report

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "bytes_freed": self.bytes_freed,
            "files_deleted": self.files_deleted,
            "actions": [d.as_dict() for d in self.actions],
            "pending": [d.as_dict() for d in self.pending],
            "kept": self.kept,
        }


# -- references ----------------------------------------------------------------------------------------------
def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _kind(record: RunRecord, kind_names: KindNames) -> str:
    return current_kind(record, kind_names)


def references(records: list[RunRecord], settings: Settings, kind_names: KindNames) -> dict[str, list[str]]:
    """Run id -> why something still needs it: aliases pointing at it, runs that name it as their parent or
    in their config (a run id, `run:<id>/...`, a path inside its directory). Runs of the `DERIVED_KINDS`
    (evaluations, generations, scores, under any name they were recorded) are results about a run, not runs
    that need it: they keep nothing."""
    found: dict[str, list[str]] = {}
    for run_id, aliases in aliased_run_ids(settings).items():
        found.setdefault(run_id, []).extend(f"alias {a}" for a in aliases)
    ids = {r.id for r in records}
    by_dir = {str(Path(r.run_dir)): r.id for r in records}
    runs_dir = str(settings.runs_dir)
    for record in records:
        if _kind(record, kind_names) in DERIVED_KINDS:
            continue
        if record.parent_id and record.parent_id in ids and record.parent_id != record.id:
            found.setdefault(record.parent_id, []).append(f"parent of {record.kind} run {record.id}")
        named: set[str] = set()
        for text in _strings(record.config):
            if text in ids:
                named.add(text)
            elif text.startswith("run:"):
                named.add(text[4:].split("/", 1)[0])
            elif text.startswith(runs_dir + "/"):
                top = text[len(runs_dir) + 1 :].split("/", 1)[0]
                named.add(by_dir.get(f"{runs_dir}/{top}", top))
        for other in sorted(named - {record.id}):
            if other in ids:
                found.setdefault(other, []).append(f"named in the config of {record.kind} run {record.id}")
    return found


def best_runs(records: list[RunRecord], policy: RetentionPolicy, kind_names: KindNames) -> dict[str, str]:
    """Run id -> why it is among the best `keep_best` of its group (kind, whatever name its runs were
    recorded under, and `group_by_tag` value)."""
    if policy.keep_best <= 0:
        return {}
    groups: dict[tuple[str, str], list[tuple[float, RunRecord]]] = {}
    for record in records:
        value = record.metrics.get(policy.metric)
        if record.status is not RunStatus.COMPLETED or not isinstance(value, int | float):
            continue
        tag = str(record.tags.get(policy.group_by_tag, "")) if policy.group_by_tag else ""
        groups.setdefault((_kind(record, kind_names), tag), []).append((float(value), record))
    kept: dict[str, str] = {}
    for (kind, tag), rows in groups.items():
        rows.sort(key=lambda row: row[0], reverse=policy.metric_mode == "max")
        where = f"{kind}" + (f", {policy.group_by_tag}={tag}" if policy.group_by_tag else "")
        for rank, (value, record) in enumerate(rows[: policy.keep_best], start=1):
            kept[record.id] = f"best {rank} of {where} by {policy.metric} ({value:.4g})"
    return kept


def _unit_blocker(
    children: list[RunRecord], referenced: dict[str, list[str]], best: dict[str, str] | None = None
) -> str | None:
    """Why a run cannot go with its evaluations now (one of them is unfinished or referenced, or, in a prune
    pass, among the `best` runs the policy keeps), else None."""
    for child in children:
        if not child.status.finished:
            return f"its {child.kind} run {child.id} is {child.status.value}"
    for child in children:
        if child.id in referenced:
            return f"its {child.kind} run {child.id} is referenced: {'; '.join(referenced[child.id][:3])}"
    for child in children if best else []:  # deleted with its run, the best evaluation was kept by nothing
        if best and child.id in best:
            return f"its {child.kind} run {child.id} is {best[child.id]}"
    return None


# -- the pass ------------------------------------------------------------------------------------------------
StoreLike = DirectoryFileStore | HttpFileStore


@dataclass
class _Pass:
    policy: RetentionPolicy
    dry_run: bool
    settings: Settings
    registry: RunRegistry
    store: StoreLike
    now: float
    report: PruneReport
    gone: set[str] = field(default_factory=set)
    """Runs this pass deleted (or, dry, would delete): an evaluation deleted with its run is not a candidate
    of its own afterwards."""

    def event(self, decision: Decision, type_: EventType) -> None:
        decision.status = {"cleanup_dry_run": "dry_run", "cleanup_completed": "done"}.get(type_, "failed")
        self.report.actions.append(decision)
        record_event(
            CleanupEvent(
                type=type_,
                target=decision.target,
                action=decision.action,
                bytes_freed=decision.bytes if type_ != "cleanup_failed" else 0,
                files_deleted=decision.files if type_ != "cleanup_failed" else 0,
                kind=decision.kind,
                reason=decision.reason,
                error=decision.error,
                at=self.now,
            ),
            self.settings,
        )

    def keep(self, record: RunRecord, reason: str) -> None:
        self.report.kept[record.id] = reason
        if record.cleanup_marked_at is not None and not self.dry_run:
            self.registry.update(record.id, cleanup_marked_at=None)

    def grace_s(self, record: RunRecord) -> float:
        grace = self.policy.grace_period_s
        if record.kind == "tokenizer" and self.policy.tokenizers_unreferenced_days is not None:
            grace = max(grace, self.policy.tokenizers_unreferenced_days * 86400.0)
        return grace

    def run(self, record: RunRecord, reason: str, children: list[RunRecord] | None = None) -> None:
        """A candidate run: mark it, wait for its grace period, or delete / clean it. Deleted, it takes its
        `children` (its evaluations: `derived_children`) with it; cleaned (uploads on), its row stays and so
        do they."""
        uploads = self.settings.upload_runs
        decision = Decision(record.id, "clean" if uploads else "delete", reason, record.kind)
        grace = self.grace_s(record)
        if grace > 0:
            marked = record.cleanup_marked_at
            if marked is None or self.now - marked < grace:
                if marked is None and not self.dry_run:
                    self.registry.update(record.id, cleanup_marked_at=self.now)
                elif marked is None:
                    self.report.unmarked.add(record.id)
                decision.status, decision.due_at = "pending", (marked or self.now) + grace
                self.report.pending.append(decision)
                return
        run_dir = Path(record.run_dir)
        usage = disk_usage(run_dir) if run_dir.exists() else Usage()
        decision.bytes, decision.files = usage.bytes, usage.files
        if not uploads:
            taken = [c for c in children or [] if c.id not in self.gone]
            if not self.with_children(record, taken):
                decision.error = "one of its evaluations could not be deleted"
                self.event(decision, "cleanup_failed")
                return
            decision.children = [c.id for c in taken]
        if self.dry_run:
            if uploads and not self.archived(record):
                decision.reason += "; its archive would be uploaded first"
            self.gone.add(record.id)
            self.event(decision, "cleanup_dry_run")
            return
        try:
            if uploads and not self.archived(record):
                upload_run(record, settings=self.settings, registry=self.registry, store=self.store)
                record = self.registry.get(record.id)
                if not self.archived(record):
                    raise ConflictError("the file store does not hold its archive intact: not cleaned")
            remove_run(record, self.registry, keep_row=uploads, now=self.now)
        except (TldrlabError, OSError) as exc:
            decision.error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.event(decision, "cleanup_failed")
            return
        self.gone.add(record.id)
        self.event(decision, "cleanup_completed")

    def with_children(self, parent: RunRecord, children: list[RunRecord]) -> bool:
        """Delete (dry: would delete) `parent`'s evaluations before it, one event each; False once one
        failed (the run then stays, with the evaluations not yet deleted)."""
        for child in children:
            decision = Decision(
                child.id, "delete", f"{child.kind} of run {parent.id}, deleted with it", child.kind
            )
            usage = disk_usage(Path(child.run_dir)) if Path(child.run_dir).exists() else Usage()
            decision.bytes, decision.files = usage.bytes, usage.files
            self.report.kept.pop(child.id, None)
            self.report.pending[:] = [d for d in self.report.pending if d.target != child.id]
            if self.dry_run:
                self.gone.add(child.id)
                self.event(decision, "cleanup_dry_run")
                continue
            try:
                remove_run(child, self.registry, keep_row=False, now=self.now)
            except (TldrlabError, OSError) as exc:
                decision.error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                self.event(decision, "cleanup_failed")
                return False
            self.gone.add(child.id)
            self.event(decision, "cleanup_completed")
        return True

    def archived(self, record: RunRecord) -> bool:
        """Its archive is in the store intact and the directory did not change since it was made."""
        if not (record.archive_sha256 and record.archived_at) or changed_since_archive(record):
            return False
        return self.store.verify(record.archive_sha256)

    def checkpoints(self, record: RunRecord) -> None:
        keep = self.policy.checkpoints_keep_last
        folder = Path(record.run_dir) / "checkpoints"
        if keep is None or not folder.is_dir() or owner_alive(record.run_dir):
            return
        steps = sorted(
            (int(match.group(1)), path)
            for path in folder.iterdir()
            if (match := _STEP.match(path.name)) is not None
        )
        old = [path for _, path in steps[: max(0, len(steps) - keep)]]
        if not old:
            return
        usages = [disk_usage(p) for p in old]
        decision = Decision(
            record.id,
            "checkpoints",
            f"{len(old)} step checkpoint(s) beyond the newest {keep}",
            record.kind,
            bytes=sum(u.bytes for u in usages),
            files=sum(u.files for u in usages),
        )
        if self.dry_run:
            self.event(decision, "cleanup_dry_run")
            return
        try:
            for path in old:
                _remove(path)
        except OSError as exc:
            decision.error = f"{type(exc).__name__}: {exc}"
            self.event(decision, "cleanup_failed")
            return
        self.event(decision, "cleanup_completed")

    def caches(self) -> None:
        root = self.settings.home / CACHE_SUBDIR
        limit, min_free = self.policy.cache_max_bytes, self.policy.cache_min_free_bytes
        if not root.is_dir() or (limit is None and min_free is None):
            return
        entries = []
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                info = path.stat()
                entries.append((max(info.st_atime, info.st_mtime), info.st_size, path))
        entries.sort(key=lambda e: e[0])
        total = sum(size for _, size, _ in entries)
        free = shutil.disk_usage(self.settings.home).free
        chosen: list[tuple[int, Path]] = []
        for _, size, path in entries:
            over = limit is not None and total > limit
            short = min_free is not None and free < min_free
            if not (over or short):
                break
            chosen.append((size, path))
            total -= size
            free += size
        if not chosen:
            return
        reasons = []
        if limit is not None:
            reasons.append(f"caches over {limit} bytes")
        if min_free is not None:
            reasons.append(f"less than {min_free} bytes free")
        decision = Decision(
            "cache",
            "cache",
            f"{len(chosen)} least recently used cache file(s): " + " or ".join(reasons),
            bytes=sum(size for size, _ in chosen),
            files=len(chosen),
        )
        if self.dry_run:
            self.event(decision, "cleanup_dry_run")
            return
        try:
            for _, path in chosen:
                path.unlink(missing_ok=True)
        except OSError as exc:
            decision.error = f"{type(exc).__name__}: {exc}"
            self.event(decision, "cleanup_failed")
            return
        self.event(decision, "cleanup_completed")


def changed_since_archive(record: RunRecord) -> bool:
    """Whether a file of the run's directory was written after its archive was made (an evaluation wrote its
    results next to the model, say): the archive would no longer restore it as it is."""
    if record.archived_at is None:
        return True
    run_dir = Path(record.run_dir)
    if not run_dir.is_dir():
        return False
    for root, _, files in os.walk(run_dir):
        for name in files:
            if name == LOCK_FILE:
                continue
            try:
                if (Path(root) / name).lstat().st_mtime > record.archived_at + 1e-3:
                    return True
            except OSError:
                continue
    return False


def remove_run(record: RunRecord, registry: RunRegistry, *, keep_row: bool, now: float | None = None) -> None:
    """Delete a finished run's directory (holding its lock, so no process executes it meanwhile) and either
    its registry row or, with `keep_row`, mark it cleaned."""
    run_dir = Path(record.run_dir)
    if run_dir.is_dir():
        lock = RunLock.acquire(run_dir, new_owner(), wait_s=0.0)
        try:
            shutil.rmtree(run_dir)
        finally:
            lock.release()
    if keep_row:
        registry.update(record.id, cleaned_at=now or time.time(), cleanup_marked_at=None)
    else:
        # once its row goes nothing can restore or list it: its files beside the run it evaluated go too
        beside = _files_in_parent(record, registry)
        if beside is not None and beside.is_dir():
            shutil.rmtree(beside)
        registry.delete(record.id)


def _files_in_parent(record: RunRecord, registry: RunRegistry) -> Path | None:
    """Where a later evaluation's files are under the run it evaluated (`evaluations/<its id>/`); None for a
    run without a parent, or whose parent is gone."""
    if not record.parent_id or record.parent_id == record.id:
        return None
    try:
        parent = registry.get(record.parent_id)
    except TldrlabError:
        return None
    return Path(parent.run_dir) / EVALUATIONS / record.id


def prune(
    policy: RetentionPolicy | None = None,
    *,
    kind_names: KindNames,
    dry_run: bool | None = None,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
    store: StoreLike | None = None,
    runs: Iterable[str] | None = None,
    now: float | None = None,
) -> PruneReport:
    """One retention pass (see the module docstring). `runs` limits it to those runs (no checkpoint or cache
    trimming then): what a worker does right after uploading a run. `kind_names`: see `KindNames`."""
    settings = settings or get_settings()
    policy = policy or settings.retention
    dry_run = policy.dry_run if dry_run is None else dry_run
    registry = registry or open_registry(settings)
    cleanup = _Pass(
        policy=policy,
        dry_run=dry_run,
        settings=settings,
        registry=registry,
        store=store or open_file_store(settings),
        now=time.time() if now is None else now,
        report=PruneReport(dry_run=dry_run),
    )
    records = _all_runs(registry)
    referenced = references(records, settings, kind_names)
    best = best_runs(records, policy, kind_names)
    only = set(runs) if runs is not None else None
    max_age_s = policy.older_than_days * 86400.0
    kept_here: list[RunRecord] = []
    by_parent: dict[str, list[RunRecord]] = {}  # one scan, not one per run
    for record in records:
        if record.parent_id:
            by_parent.setdefault(record.parent_id, []).append(record)
    for record in records:
        if only is not None and record.id not in only:
            continue
        if not record.status.finished or record.cleaned_at is not None or record.id in cleanup.gone:
            continue
        children = derived_children(record, by_parent.get(record.id, []), kind_names)
        reason = _keep_reason(record, policy, referenced, best, cleanup.now, max_age_s)
        if reason is None:
            reason = _unit_blocker(children, referenced, best)
        if reason is not None:
            cleanup.keep(record, reason)
            kept_here.append(record)
            continue
        age_days = (cleanup.now - (record.ended_at or record.created_at)) / 86400.0
        why = (
            "a tokenizer no run references"
            if record.kind == "tokenizer"
            else f"{record.status.value} {age_days:.1f} days ago, unreferenced, not among the best"
        )
        cleanup.run(record, why, children)
    if only is None:
        for record in kept_here:
            if record.id not in cleanup.gone and Path(record.run_dir).is_dir():
                cleanup.checkpoints(record)
        cleanup.caches()
    return cleanup.report


def _keep_reason(
    record: RunRecord,
    policy: RetentionPolicy,
    referenced: dict[str, list[str]],
    best: dict[str, str],
    now: float,
    max_age_s: float,
) -> str | None:
    if record.id in referenced:
        return "referenced: " + "; ".join(referenced[record.id][:3])
    if record.status.value not in policy.statuses:
        return f"status {record.status.value} is not pruned"
    if policy.kinds and record.kind not in policy.kinds:
        return f"kind {record.kind} is not pruned"
    if record.kind == "tokenizer":
        if policy.tokenizers_unreferenced_days is None:
            return "tokenizers are kept"
    else:
        if record.id in best:
            return best[record.id]
        if now - (record.ended_at or record.created_at) < max_age_s:
            return f"ended less than {policy.older_than_days:g} days ago"
    if owner_alive(record.run_dir):
        return "a process holds it"
    return None


def _all_runs(registry: RunRegistry) -> list[RunRecord]:
    """Every run, in one query: pages of 1000 by offset skipped a run whenever another process deleted a
    newer one between two pages (the rows shifted up), and a skipped run's references were not seen."""
    return registry.list(limit=None)


def delete_run(
    run_id: str,
    *,
    kind_names: KindNames,
    dry_run: bool = False,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
) -> Decision:
    """Delete one run now with its evaluations (`derived_children`: their directories, their files under
    its `evaluations/`, their registry rows; an archive in the file store stays): refused (ConflictError)
    while it or one of its evaluations is queued or running, or while an alias or another run references it
    or one of its evaluations. `run_id` is the whole id: a prefix is refused (`RunRegistry.find_whole`).
    The decision names the evaluations (`children`) and counts their bytes and files with the run's; each
    deletion is its own cleanup event."""
    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    record = registry.find_whole(run_id, doing="deleting a run")
    if not record.status.finished:
        raise ConflictError(f"run {record.id} is {record.status.value}: cancel it first")
    records = _all_runs(registry)
    referenced = references(records, settings, kind_names)
    referrers = referenced.get(record.id)
    if referrers:
        raise ConflictError(f"run {record.id} is still referenced: {'; '.join(referrers[:5])}")
    children = derived_children(record, records, kind_names)
    blocker = _unit_blocker(children, referenced)
    if blocker:
        unfinished = [c for c in children if not c.status.finished]
        hint = ": cancel it or wait for it to end first" if unfinished else ""
        raise ConflictError(f"run {record.id} is not deleted: {blocker}{hint}")
    usage = disk_usage(Path(record.run_dir)) if Path(record.run_dir).exists() else Usage()
    decision = Decision(
        record.id, "delete", "deleted on request", record.kind, bytes=usage.bytes, files=usage.files
    )
    cleanup = _Pass(
        policy=settings.retention,
        dry_run=dry_run,
        settings=settings,
        registry=registry,
        store=open_file_store(settings),
        now=time.time(),
        report=PruneReport(dry_run=dry_run),
    )
    if not cleanup.with_children(record, children):
        failed = cleanup.report.actions[-1]
        raise ConflictError(
            f"run {record.id} was not deleted: its {failed.kind} run {failed.target} could not be "
            f"({failed.error})"
        )
    decision.children = [c.id for c in children]
    together = replace(
        decision,
        bytes=cleanup.report.bytes_freed + usage.bytes,
        files=cleanup.report.files_deleted + usage.files,
    )
    if dry_run:
        cleanup.event(decision, "cleanup_dry_run")
        together.status = decision.status
        return together
    try:
        remove_run(record, registry, keep_row=False)
    except RunOwnedError:
        raise
    except OSError as exc:
        decision.error = f"{type(exc).__name__}: {exc}"
        cleanup.event(decision, "cleanup_failed")
        raise ConflictError(f"run {record.id} could not be deleted: {decision.error}") from exc
    cleanup.event(decision, "cleanup_completed")
    together.status = decision.status
    return together


def settle_finished_run(
    run_id: str,
    *,
    kind_names: KindNames,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
) -> PruneReport | None:
    """What a worker does after a run finished: upload its archive (with `upload_runs`), then apply the
    retention policy to it alone (with `retention.enabled`: a run the policy does not keep is cleaned or
    deleted now or, with a grace period, marked). Failures are logged, never raised: the run's outcome
    stands, and a later pass tries again."""
    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    try:
        record = registry.get(run_id)
        if not record.status.finished:
            return None
        if settings.upload_runs and changed_since_archive(record):
            upload_run(record, settings=settings, registry=registry)
        if settings.retention.enabled:
            return prune(kind_names=kind_names, settings=settings, registry=registry, runs=[run_id])
    except Exception as exc:
        log.warning(
            f"run {run_id}: archiving or retention after it finished failed: {type(exc).__name__}: {exc}"
        )
    return None
