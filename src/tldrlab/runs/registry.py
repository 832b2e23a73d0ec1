"""The run registry: one row per run (SQLite by default, PostgreSQL by URL).

The registry is the index; the run directory is the record. Status moves
queued -> running -> completed | failed | cancelled (and running -> queued when a worker requeues it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from tldrlab.config import Settings, get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import AmbiguousRunIdError, InvalidInputError, NotFoundError
from tldrlab.report import Column, Table
from tldrlab.runs.db import Database, connect, migrate

SUBMITTED_VIA = "submitted_via"
"""Tag of a run someone asked for on its own: "api" on runs created through the API, the queue's runs (a
worker confines them again before executing them, and requeues them when their worker dies); "cli" on an
evaluation `tldrlab eval RUN` starts, whose parent is the run it evaluates but which runs on its own."""


DERIVED_KINDS = frozenset({"evaluate", "generate", "score"})
"""Kinds (current names) whose runs describe another run, their parent (its evaluations, outputs, scores):
naming it in their configs keeps it alive in no retention pass (one kept itself, referenced or among the best,
does), they go with it when it is deleted, and travel with its export."""
KindNames = Mapping[str, str]
"""Recorded kind name -> its kind's current name (`tldrlab.kinds.kind_names_by_recorded_name()`, which sits
above this module); a name it lacks (a kind no longer registered) stands for itself."""


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            config TEXT NOT NULL,
            run_dir TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            ended_at DOUBLE PRECISION,
            heartbeat_at DOUBLE PRECISION,
            message TEXT,
            progress DOUBLE PRECISION,
            metrics TEXT,
            error_code TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS runs_kind_status ON runs (kind, status)",
    ],
    [
        "ALTER TABLE runs ADD COLUMN parent_id TEXT",
        "ALTER TABLE runs ADD COLUMN tags TEXT",
        "ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN worker TEXT",
        "ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    ],
    [
        # The process executing the run (host:pid:token), set by execute_run once it holds the run's lock.
        "ALTER TABLE runs ADD COLUMN owner TEXT",
    ],
    [
        # Lifecycle: the run's archive in the file store (sha256 = its file id, verified when archived_at is
        # set), when its local directory was cleaned (restorable from the archive), and when a retention pass
        # first found it deletable (the grace period counts from there).
        "ALTER TABLE runs ADD COLUMN archive_sha256 TEXT",
        "ALTER TABLE runs ADD COLUMN archive_size BIGINT",
        "ALTER TABLE runs ADD COLUMN archived_at DOUBLE PRECISION",
        "ALTER TABLE runs ADD COLUMN cleaned_at DOUBLE PRECISION",
        "ALTER TABLE runs ADD COLUMN cleanup_marked_at DOUBLE PRECISION",
    ],
    [
        # When the run entered its current status: the time of its lifecycle event (an SSE history replayed
        # later, a notifier told late), which no other column holds for queued -> running -> queued again.
        "ALTER TABLE runs ADD COLUMN status_at DOUBLE PRECISION",
    ],
    [
        # A run's children (its evaluations, a sweep's trials) are asked for by parent, newest first: without
        # an index every such question scanned the whole table, which grows with every run ever recorded.
        "CREATE INDEX IF NOT EXISTS runs_parent_created ON runs (parent_id, created_at)",
    ],
    [
        # 1 while a reconciler settled the run in the registry but not yet in its manifest (the run directory
        # refused the write): the next reconcile pass mirrors the status there, and nothing else remembers
        # which manifests lag. Indexed: every pass asks for the few marked among every run ever recorded.
        "ALTER TABLE runs ADD COLUMN manifest_behind INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS runs_manifest_behind ON runs (manifest_behind)",
    ],
    [
        # The study a sweep or search run opens when it starts (its kind's `study`), set when the run is
        # created: a submit finds the queued runs of one study by it, instead of parsing every queued sweep's
        # config. NULL: not such a run, or a row from before the column (`study_recorded=False` finds those).
        "ALTER TABLE runs ADD COLUMN study TEXT",
        "CREATE INDEX IF NOT EXISTS runs_status_study ON runs (status, study)",
    ],
]


@dataclass
class RunRecord:
    """One row of the registry."""

    id: str
    kind: str
    status: RunStatus
    config: dict[str, Any]
    run_dir: str
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    heartbeat_at: float | None = None
    message: str | None = None
    progress: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    parent_id: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    worker: str | None = None
    attempts: int = 0
    owner: str | None = None
    """`host:pid:token` of the process executing (or that last executed) the run."""
    archive_sha256: str | None = None
    """The run's archive in the file store (its file id), once uploaded and verified."""
    archive_size: int | None = None
    archived_at: float | None = None
    cleaned_at: float | None = None
    """When retention removed the local directory (the archive restores it); None while it is there."""
    cleanup_marked_at: float | None = None
    """When a retention pass first found the run deletable (its grace period counts from there)."""
    status_at: float | None = None
    study: str | None = None
    """The study a sweep or search run opens when it starts ("" when its config could not say); None for
    other runs and for rows recorded before the registry kept it."""
    """When the run entered its current status (None in rows written before the column existed)."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRecord:
        return cls(
            id=row["id"],
            kind=row["kind"],
            status=RunStatus(row["status"]),
            config=json.loads(row["config"]) if row.get("config") else {},
            run_dir=row["run_dir"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            heartbeat_at=row["heartbeat_at"],
            message=row["message"],
            progress=row["progress"],
            metrics=json.loads(row["metrics"]) if row["metrics"] else {},
            error_code=row["error_code"],
            parent_id=row["parent_id"],
            tags=json.loads(row["tags"]) if row["tags"] else {},
            cancel_requested=bool(row["cancel_requested"]),
            worker=row["worker"],
            attempts=int(row["attempts"] or 0),
            owner=row.get("owner"),
            archive_sha256=row.get("archive_sha256"),
            archive_size=None if row.get("archive_size") is None else int(row["archive_size"]),
            archived_at=row.get("archived_at"),
            cleaned_at=row.get("cleaned_at"),
            cleanup_marked_at=row.get("cleanup_marked_at"),
            status_at=row.get("status_at"),
            study=row.get("study"),
        )

    @property
    def sweep_trial(self) -> int | None:
        """The number of the study trial this run is, when a sweep created it for one (tags `study` and
        `trial`, the sweep run its parent); None for any other run."""
        number = self.tags.get("trial")
        if "study" in self.tags and isinstance(number, int) and self.parent_id is not None:
            return number
        return None

    def entered_status_at(self) -> float | None:
        """When the run entered its current status; for rows older than `status_at`, the closest time the
        row has (its end, start or creation)."""
        if self.status_at is not None:
            return self.status_at
        if self.status.finished:
            return self.ended_at
        return self.started_at if self.status is RunStatus.RUNNING else self.created_at

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["status"] = self.status.value
        return data


class RunQuery(ConfigModel):
    """Which runs a listing shows, newest first: `GET /runs` (query parameters) and `tldrlab runs list`."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    kind: str | None = Field(None, max_length=100)
    """Only runs of this kind (train, tokenizer, ingest, ...)."""
    status: RunStatus | None = None
    """Only runs in this status."""
    parent_id: str | None = Field(None, max_length=200)
    """Only the runs this run started (a training run's evaluations, a sweep's trials): its id or a unique
    prefix of it."""
    limit: int = Field(50, ge=1, le=1000)
    """How many runs, newest first."""
    offset: int = Field(0, ge=0, le=10**9)
    """Skip this many of the newest runs first (paging)."""

    @field_validator("kind", "parent_id")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        # a blank filter was read as no filter (`--kind ''`, `GET /runs?kind=` listed every run): a value
        # given is a filter, and a blank one filters nothing a user could mean
        if value is not None and not value.strip():
            raise ValueError("is empty: give a value or leave the filter out")
        return value


def _some(ids: list[str]) -> str:
    """Up to five run ids for a message, then how many more."""
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


class RunRegistry:
    """CRUD over the `runs` table. Create it with `open_registry()`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        migrate(db, "runs", MIGRATIONS)

    def insert(self, record: RunRecord) -> None:
        self.db.execute(
            "INSERT INTO runs (id, kind, status, config, run_dir, created_at, message, parent_id, tags, "
            "status_at, study) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.kind,
                record.status.value,
                json.dumps(record.config, default=str),
                record.run_dir,
                record.created_at,
                record.message,
                record.parent_id,
                json.dumps(record.tags),
                record.created_at,
                record.study,
            ),
        )

    def insert_whole(self, record: RunRecord) -> None:
        """Insert a row with every column as `record` has it (a run imported from an archive)."""
        names = list(RunRecord.__dataclass_fields__)
        values = []
        for name in names:
            value = getattr(record, name)
            if isinstance(value, dict):
                value = json.dumps(value, default=str)
            elif isinstance(value, RunStatus):
                value = value.value
            elif isinstance(value, bool):
                value = int(value)
            values.append(value)
        marks = ", ".join("?" for _ in names)
        self.db.execute(f"INSERT INTO runs ({', '.join(names)}) VALUES ({marks})", values)

    def get(self, run_id: str) -> RunRecord:
        if "\x00" in run_id:  # no run id holds NUL; PostgreSQL cannot even compare one (a DataError)
            raise NotFoundError(f"no run with id {run_id!r}", run_id=run_id)
        row = self.db.query_one("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise NotFoundError(f"no run with id {run_id!r}", run_id=run_id)
        return RunRecord.from_row(row)

    def find(
        self, prefix: str, *, parent_id: str | None = None, kind: tuple[str, ...] | None = None
    ) -> RunRecord:
        """A run by full id or unique id prefix (what people type). `parent_id` / `kind`: among that run's
        children / those kinds only (a training run's evaluations), so a prefix unique among them is found
        however many other runs share it."""
        if not prefix.strip():  # "" is a prefix of every id: the only run would be shown, deleted, exported
            raise InvalidInputError("the run id is empty: give a run id or a unique prefix of one")
        rows = self._starting(prefix, parent_id=parent_id, kind=kind)
        exact = [r for r in rows if r["id"] == prefix]
        if exact:
            return RunRecord.from_row(exact[0])
        if len(rows) == 1:
            return RunRecord.from_row(rows[0])
        if not rows:
            raise NotFoundError(f"no run with id {prefix!r}", run_id=prefix)
        ids = [row["id"] for row in rows]  # named, so the user can retype one (a count alone cannot help)
        raise AmbiguousRunIdError(
            f"run id prefix {prefix!r} is ambiguous ({len(ids)} runs match: {_some(ids)})",
            run_id=prefix,
            matches=ids[:20],
        )

    def find_whole(self, run_id: str, *, doing: str) -> RunRecord:
        """A run by its whole id, for what cannot be undone (`doing`: "deleting a run"). Reads take a unique
        prefix (`find`), but a prefix as short as the kind's first letter picks whichever run is alone in
        starting with it: a prefix is refused here, naming the runs it starts so the user retypes the one
        meant, as `DELETE /runs/{id}` takes only the whole id."""
        if not run_id.strip():
            raise InvalidInputError(f"the run id is empty: {doing} takes a run's whole id")
        try:
            return self.get(run_id)
        except NotFoundError:
            pass
        ids = [row["id"] for row in self._starting(run_id)]
        if not ids:
            raise NotFoundError(f"no run with id {run_id!r}", run_id=run_id)
        raise InvalidInputError(
            f"{doing} takes a run's whole id, not a prefix: {run_id!r} starts {_some(ids)}",
            run_id=run_id,
            matches=ids[:20],
        )

    def _starting(
        self, prefix: str, *, parent_id: str | None = None, kind: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """The rows whose id starts with `prefix` (oldest first), among `parent_id`'s children / `kind`."""
        # no run id holds NUL, and PostgreSQL cannot compare one (as in `get`): the parent's id too (GET
        # /runs/a%00b/generate/x looked the request up among that parent's children, a DataError: a 500)
        if "\x00" in prefix or (parent_id is not None and "\x00" in parent_id):
            return []
        # the prefix's own % and _ taken literally: `runs delete %` matched every run, as "" did
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses, params = ["id LIKE ? ESCAPE '\\'"], [escaped + "%"]
        if parent_id is not None:
            clauses.append("parent_id = ?")
            params.append(parent_id)
        if kind:
            clauses.append(f"kind IN ({', '.join('?' for _ in kind)})")
            params.extend(kind)
        return self.db.query(f"SELECT * FROM runs WHERE {' AND '.join(clauses)} ORDER BY created_at", params)

    def list(
        self,
        kind: str | tuple[str, ...] | None = None,
        status: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        *,
        parent_id: str | None = None,
        study: str | None = None,
        study_recorded: bool | None = None,
        with_config: bool = True,
    ) -> list[RunRecord]:
        """Newest first. `kind`: a name as recorded, or several (a kind under its current and old names,
        `tldrlab.kinds.recorded_kind_names`: this module sits below the kind registry and maps nothing).
        `parent_id`: only the runs that run started (a training run's evaluations, a sweep's trials),
        filtered in SQL, so they are found however many newer runs of their kind the registry holds. `study`:
        only the runs that open that study; `study_recorded=False`: only rows whose study is not recorded.
        `limit=None`: every matching run. `with_config=False` leaves configs unread (empty): list views stay
        cheap."""
        clauses: list[str] = []
        params: list[Any] = []
        if kind:
            names = (kind,) if isinstance(kind, str) else kind
            clauses.append(f"kind IN ({', '.join('?' for _ in names)})")
            params.extend(names)
        if status:
            clauses.append("status = ?")
            params.append(status)
        if parent_id is not None:
            clauses.append("parent_id = ?")
            params.append(parent_id)
        if study is not None:
            clauses.append("study = ?")
            params.append(study)
        if study_recorded is not None:
            clauses.append("study IS NOT NULL" if study_recorded else "study IS NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        columns = (
            "*" if with_config else ", ".join(f for f in RunRecord.__dataclass_fields__ if f != "config")
        )
        sql = f"SELECT {columns} FROM runs {where} ORDER BY created_at DESC"
        if limit is None:  # SQLite takes no OFFSET without a LIMIT: the rows are skipped here
            return [RunRecord.from_row(r) for r in self.db.query(sql, params)[offset:]]
        rows = self.db.query(f"{sql} LIMIT ? OFFSET ?", (*params, limit, offset))
        return [RunRecord.from_row(r) for r in rows]

    def update(self, run_id: str, **fields: Any) -> None:
        """Set columns by name; dict values are stored as JSON. Setting `status` also sets `status_at` (now,
        unless given)."""
        if not fields:
            return
        if "status" in fields:
            fields.setdefault("status_at", time.time())
        sets, params = [], []
        for name, value in fields.items():
            if name not in RunRecord.__dataclass_fields__:
                raise ValueError(f"unknown run field {name!r}")
            if isinstance(value, dict):
                value = json.dumps(value, default=str)
            elif isinstance(value, RunStatus):
                value = value.value
            elif isinstance(value, bool):
                value = int(value)
            sets.append(f"{name} = ?")
            params.append(value)
        changed = self.db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*params, run_id))
        if changed == 0:
            raise NotFoundError(f"no run with id {run_id!r}", run_id=run_id)

    def transition(
        self, run_id: str, from_statuses: tuple[RunStatus, ...], to: RunStatus, **fields: Any
    ) -> bool:
        """Compare-and-set status: True when the run was in one of `from_statuses` and is now `to`."""
        marks = ", ".join("?" for _ in from_statuses)
        fields.setdefault("status_at", time.time())
        sets = ["status = ?"] + [f"{k} = ?" for k in fields]
        values = [json.dumps(v) if isinstance(v, dict) else v for v in fields.values()]
        changed = self.db.execute(
            f"UPDATE runs SET {', '.join(sets)} WHERE id = ? AND status IN ({marks})",
            (to.value, *values, run_id, *(s.value for s in from_statuses)),
        )
        return changed == 1

    # -- what workers ask of the table (claiming, liveness, reconciliation) ----------------------------------
    def claim(self, run_id: str, worker: str, stale_before: float) -> bool:
        """Compare-and-set a run to `running` for `worker` (counting an attempt): True only for the one
        worker that wins. Claimable: `queued` runs not cancelled, and `running` runs whose heartbeat is older
        than `stale_before` (the caller checks that their owner is dead)."""
        now = time.time()
        changed = self.db.execute(
            "UPDATE runs SET status = 'running', worker = ?, heartbeat_at = ?, status_at = ?, "
            "attempts = attempts + 1 WHERE id = ? AND cancel_requested = 0 "
            "AND (status = 'queued' OR (status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)))",
            (worker, now, now, run_id, stale_before),
        )
        return changed == 1

    def beat_for(self, run_id: str, worker: str, now: float) -> None:
        """Heartbeat a running run on behalf of the worker executing it (no-op if another took it)."""
        self.db.execute(
            "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running' AND worker = ?",
            (now, run_id, worker),
        )

    def beat_owned(self, run_id: str, owner: str, now: float) -> None:
        """Heartbeat a running run on behalf of the process that owns it (no-op once another owns it)."""
        self.db.execute(
            "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND owner = ? AND status = 'running'",
            (now, run_id, owner),
        )

    def stale_running(self, stale_before: float) -> Sequence[RunRecord]:
        """Running runs whose heartbeat is older than `stale_before` (their executor may have died)."""
        rows = self.db.query(
            "SELECT * FROM runs WHERE status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)",
            (stale_before,),
        )
        return [RunRecord.from_row(r) for r in rows]

    def settle_stale(
        self, run_id: str, stale_before: float, to: RunStatus, message: str, error_code: str | None
    ) -> bool:
        """Compare-and-set a still-stale running run to `to` (queued to resume it, failed to give up): True
        for the one reconciler that wins."""
        now = time.time()
        # marked manifest_behind in the same statement: if the reconciler dies or its manifest write fails
        # before `manifest_caught_up`, the next pass still knows the manifest says running
        changed = self.db.execute(
            "UPDATE runs SET status = ?, message = ?, error_code = ?, ended_at = ?, status_at = ?, "
            "manifest_behind = 1 "
            "WHERE id = ? AND status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)",
            (to.value, message, error_code, now if to.finished else None, now, run_id, stale_before),
        )
        return changed == 1

    def manifests_behind(self) -> Sequence[RunRecord]:
        """Runs a reconciler settled whose manifest may not say so yet (`settle_stale` marks them)."""
        rows = self.db.query("SELECT * FROM runs WHERE manifest_behind = 1")
        return [RunRecord.from_row(r) for r in rows]

    def manifest_caught_up(self, run_id: str) -> None:
        """The run's manifest now says what the registry does: unmark it."""
        self.db.execute("UPDATE runs SET manifest_behind = 0 WHERE id = ?", (run_id,))

    def waiting_since(self, before: float) -> Sequence[RunRecord]:
        """Queued runs, not cancelled, waiting since before `before` (their last heartbeat, or creation)."""
        rows = self.db.query(
            "SELECT * FROM runs WHERE status = 'queued' AND cancel_requested = 0 "
            "AND COALESCE(heartbeat_at, created_at) < ?",
            (before,),
        )
        return [RunRecord.from_row(r) for r in rows]

    def queued_since(self, since: float) -> Sequence[RunRecord]:
        """Queued runs, not cancelled, that entered `queued` since `since` (created, or put back after an
        attempt), oldest first (configs left unread)."""
        columns = ", ".join(f for f in RunRecord.__dataclass_fields__ if f != "config")
        rows = self.db.query(
            f"SELECT {columns} FROM runs WHERE status = 'queued' AND cancel_requested = 0 "
            "AND COALESCE(status_at, created_at) >= ? ORDER BY COALESCE(status_at, created_at)",
            (since,),
        )
        return [RunRecord.from_row(r) for r in rows]

    def heartbeat(self, run_id: str, progress: float | None = None, message: str | None = None) -> None:
        fields: dict[str, Any] = {"heartbeat_at": time.time()}
        if progress is not None:
            fields["progress"] = progress
        if message is not None:
            fields["message"] = message
        self.update(run_id, **fields)

    def request_cancel(self, run_id: str) -> RunRecord:
        self.update(run_id, cancel_requested=True)
        return self.get(run_id)

    def unfinished_children(self, run_id: str) -> Sequence[RunRecord]:
        """Queued or running runs whose parent is `run_id` (a sweep's trials, an experiment's arms)."""
        rows = self.db.query(
            "SELECT * FROM runs WHERE parent_id = ? AND status IN ('queued', 'running') ORDER BY created_at",
            (run_id,),
        )
        return [RunRecord.from_row(r) for r in rows]

    def queued_children_of_ended(self) -> Sequence[RunRecord]:
        """Queued runs whose parent ended (completed, failed or cancelled) or is gone (deleted): what a parent
        alone would have run again waits for it in vain (a reconciler settles them)."""
        rows = self.db.query(
            "SELECT c.* FROM runs c LEFT JOIN runs p ON p.id = c.parent_id "
            "WHERE c.status = 'queued' AND c.parent_id IS NOT NULL "
            "AND (p.id IS NULL OR p.status IN ('completed', 'failed', 'cancelled')) ORDER BY c.created_at"
        )
        return [RunRecord.from_row(r) for r in rows]

    def delete(self, run_id: str) -> None:
        self.db.execute("DELETE FROM runs WHERE id = ?", (run_id,))


def open_registry(
    settings: Settings | None = None, url: str | None = None, *, lock_wait_s: float | None = None
) -> RunRegistry:
    """The registry named by `url`, else by the settings' database URL (SQLite under the home by default);
    `lock_wait_s` bounds how long a statement waits for another connection's lock (`db.Database`)."""
    settings = settings or get_settings()
    if url is None:
        settings.ensure_home()
        url = settings.resolved_database_url
    return RunRegistry(connect(url, lock_wait_s))


def runs_table(records: Sequence[RunRecord]) -> Table:
    """Runs as a listing: id, kind, status, created, progress, message."""
    columns = [
        Column("id", key=True),
        Column("kind", optional=True),  # the id starts with it: the first to go in a narrow terminal
        Column("status"),
        Column("created"),
        Column("progress", justify="right", optional=True),
        Column("message", wrap=True),
    ]
    rows = [
        [
            r.id,
            r.kind,
            r.status.value,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)) if r.created_at else "-",
            f"{r.progress:.0%}" if r.progress is not None else "-",
            (r.message or "")[:200],
        ]
        for r in records
    ]
    return Table(columns, rows)


SPELLED_OUT = ("lm", "lvm")
"""Kind names' first words said letter by letter ("el-em"): they take "an", as a vowel does."""


def a_kind_run(kind: str | None) -> str:
    """How a message names a run by its kind: "a smoke run", "an evaluate run", "an lvm_index run"."""
    text = kind or ""
    said_as_vowel = text[:1] in ("a", "e", "i", "o", "u") or text.split("_")[0] in SPELLED_OUT
    return f"{'an' if said_as_vowel else 'a'} {kind} run"


def current_kind(record: RunRecord, kind_names: KindNames) -> str:
    """The current name of the kind `record` was recorded under (`eval` -> `evaluate`)."""
    return kind_names.get(record.kind, record.kind)


def derived_children(
    record: RunRecord, records: Sequence[RunRecord], kind_names: KindNames
) -> list[RunRecord]:
    """The runs of the `DERIVED_KINDS` among `records` whose parent is `record` (its evaluations, generations
    and scores, under any name they were recorded), oldest first."""
    children = [
        r
        for r in records
        if r.parent_id == record.id and r.id != record.id and current_kind(r, kind_names) in DERIVED_KINDS
    ]
    return sorted(children, key=lambda r: r.created_at)
