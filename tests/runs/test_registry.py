from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.runs.db import Database, connect, migrate
from tldrlab.runs.registry import MIGRATIONS, RunRecord, RunRegistry, RunStatus


def _exercise(registry: RunRegistry) -> None:
    record = RunRecord(
        id="r1",
        kind="train",
        status=RunStatus.QUEUED,
        config={"lr": 0.1},
        run_dir="/x",
        created_at=1.0,
        tags={"study": "s"},
    )
    registry.insert(record)
    got = registry.get("r1")
    assert got.config == {"lr": 0.1} and got.status is RunStatus.QUEUED and got.tags == {"study": "s"}
    assert registry.transition("r1", (RunStatus.QUEUED,), RunStatus.RUNNING, started_at=2.0)
    assert not registry.transition("r1", (RunStatus.QUEUED,), RunStatus.RUNNING)
    registry.update("r1", metrics={"loss": 0.5}, progress=0.5)
    registry.heartbeat("r1", message="step 5")
    got = registry.get("r1")
    assert got.status is RunStatus.RUNNING and got.metrics == {"loss": 0.5} and got.message == "step 5"
    assert got.heartbeat_at is not None
    assert registry.request_cancel("r1").cancel_requested
    registry.insert(
        RunRecord(id="r2", kind="tokenizer", status=RunStatus.QUEUED, config={}, run_dir="/y", created_at=2.0)
    )
    assert [r.id for r in registry.list()] == ["r2", "r1"]
    assert [r.id for r in registry.list(kind="train")] == ["r1"]
    assert [r.id for r in registry.list(status="queued")] == ["r2"]
    assert registry.find("r2").kind == "tokenizer"
    with pytest.raises(NotFoundError, match="ambiguous"):
        registry.find("r")
    with pytest.raises(NotFoundError):
        registry.get("nope")
    # PostgreSQL's text cannot hold NUL: looking such an id up was a DataError (GET /runs/a%00b: a 500)
    for lookup in (registry.get, registry.find):
        with pytest.raises(NotFoundError, match="no run with id"):
            lookup("r1\x00")
    with pytest.raises(NotFoundError):
        registry.update("nope", message="x")
    _exercise_claims(registry)


def _queued(registry: RunRegistry, run_id: str) -> None:
    registry.insert(
        RunRecord(id=run_id, kind="train", status=RunStatus.QUEUED, config={}, run_dir="/c", created_at=3.0)
    )


def _exercise_claims(registry: RunRegistry) -> None:
    """Claims and heartbeats are compare-and-set in SQL: a cancelled run is never claimed, a running one
    only once its heartbeat is stale, and only the run's owner (or its worker) refreshes that heartbeat."""
    _queued(registry, "c1")
    registry.request_cancel("c1")
    assert not registry.claim("c1", "w1", stale_before=0.0)
    assert registry.get("c1").status is RunStatus.QUEUED
    _queued(registry, "c2")
    assert registry.claim("c2", "w1", stale_before=0.0)
    assert not registry.claim("c2", "w2", stale_before=0.0)  # w1's claim set a fresh heartbeat
    registry.update("c2", owner="owner-a", heartbeat_at=10.0)
    registry.beat_owned("c2", "owner-b", 20.0)
    registry.beat_for("c2", "w2", 30.0)
    assert registry.get("c2").heartbeat_at == 10.0  # neither the other owner nor the other worker beat it
    registry.beat_owned("c2", "owner-a", 40.0)
    assert registry.get("c2").heartbeat_at == 40.0
    registry.beat_for("c2", "w1", 50.0)
    assert registry.get("c2").heartbeat_at == 50.0
    assert not registry.claim("c2", "w2", stale_before=50.0)
    assert registry.claim("c2", "w2", stale_before=50.5) and registry.get("c2").worker == "w2"


def test_registry_on_sqlite(tmp_path) -> None:
    _exercise(RunRegistry(connect(f"sqlite:///{tmp_path / 'r.db'}")))


def test_registry_on_postgres(postgres_url: str) -> None:
    _exercise(RunRegistry(connect(postgres_url)))
    # opened again: the schema is current, found by reading (to_regclass on PostgreSQL)
    assert RunRegistry(connect(postgres_url)).get("r1").kind == "train"


def test_an_up_to_date_database_opens_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """A worker stopped mid-heartbeat holds SQLite's write lock; opening the registry to read must not wait
    for it (it took the lock to learn the schema was current, and failed after the 30 s busy timeout)."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    RunRegistry(connect(url)).insert(
        RunRecord(id="r1", kind="train", status=RunStatus.RUNNING, config={}, run_dir="/x", created_at=1.0)
    )
    holder = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        db = connect(url)
        db.execute("PRAGMA busy_timeout=200")  # fail fast rather than after 30 s if a write lock is needed
        assert migrate(db, "runs", MIGRATIONS) == len(MIGRATIONS)
        assert RunRegistry(db).get("r1").status is RunStatus.RUNNING
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_migrations_apply_once_and_upgrade_old_schema(tmp_path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'm.db'}")
    assert migrate(db, "runs", MIGRATIONS[:1]) == 1  # a database from before step 2
    db.execute(
        "INSERT INTO runs (id, kind, status, config, run_dir, created_at) VALUES "
        "('old', 'train', 'completed', '{}', '/d', 0)"
    )
    registry = RunRegistry(db)  # upgrades in place
    assert registry.get("old").attempts == 0
    assert migrate(db, "runs", MIGRATIONS) == len(MIGRATIONS)
    rows = db.query("SELECT version FROM schema_migrations WHERE component = 'runs' ORDER BY version")
    assert [r["version"] for r in rows] == list(range(1, len(MIGRATIONS) + 1))


def _indexes(db: Database) -> set[str]:
    sql = (
        "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'runs'"
        if db.is_postgres
        else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'"
    )
    return {row["name"] for row in db.query(sql)}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_of_the_previous_schema_gains_the_parent_index_and_keeps_its_rows(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Children are asked for by parent (a run's evaluations, a sweep's trials); a registry created before
    the parent index existed gets it when opened, with every row as it was."""
    url = (
        request.getfixturevalue("postgres_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'p.db'}"
    )
    db = connect(url)
    # the schema as the release before the index left it
    previous = next(i for i, step in enumerate(MIGRATIONS) if any("runs_parent_created" in s for s in step))
    assert migrate(db, "runs", MIGRATIONS[:previous]) == previous
    for run_id, parent in (("train-a", None), ("evaluate-b", "train-a")):
        db.execute(
            "INSERT INTO runs (id, kind, status, config, run_dir, created_at, parent_id) VALUES "
            "(?, ?, 'completed', '{\"lr\": 1}', '/d', 1.0, ?)",
            (run_id, run_id.split("-")[0], parent),
        )
    assert "runs_parent_created" not in _indexes(db)
    registry = RunRegistry(connect(url))  # opening it upgrades it in place
    assert "runs_parent_created" in _indexes(registry.db)
    assert migrate(registry.db, "runs", MIGRATIONS) == len(MIGRATIONS)
    kept = {r.id: (r.kind, r.status, r.parent_id) for r in registry.list(limit=None)}
    assert kept == {
        "train-a": ("train", RunStatus.COMPLETED, None),
        "evaluate-b": ("evaluate", RunStatus.COMPLETED, "train-a"),
    }
    child = registry.list(parent_id="train-a", limit=None)
    assert [(r.id, r.config) for r in child] == [("evaluate-b", {"lr": 1})]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_blank_or_wildcard_run_id_prefix_finds_no_run(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """An empty prefix starts every id, and LIKE read % and _ as wildcards: with one run recorded,
    `runs show ""`, `runs delete %` or `runs delete _` took that run. A blank id is refused; % and _ are
    literal characters."""
    url = (
        request.getfixturevalue("postgres_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'w.db'}"
    )
    registry = RunRegistry(connect(url))
    for run_id in ("train-1", "a_b%c"):
        registry.insert(
            RunRecord(
                id=run_id, kind="train", status=RunStatus.COMPLETED, config={}, run_dir="/w", created_at=1.0
            )
        )
    for blank in ("", "  "):
        with pytest.raises(InvalidInputError, match="the run id is empty"):
            registry.find(blank)
    for wildcard in ("%", "_", "train_", "%1", "t%"):
        with pytest.raises(NotFoundError, match="no run with id"):
            registry.find(wildcard)
    assert registry.find("a_").id == "a_b%c" and registry.find("a_b%").id == "a_b%c"
    assert registry.find("tr").id == "train-1"
