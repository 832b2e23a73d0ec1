"""A SQLite write the system refuses: the process's file-size limit (`ulimit -f`, RLIMIT_FSIZE) or a full
disk under the run registry, the data-set registry, the job queue or a sentence store (every SQLite database
goes through `runs.db.Database`). SQLite passes no errno on: the limit's EFBIG reached the user as sqlite3's
"disk I/O error" (a traceback on the command line, a 500 from the API), a full disk as "database or disk is
full". Now it is the error any other refused write is (`error [file_too_large]`, exit 9; a 507 with its code),
and what the database held before is still there.

A write SQLite makes only at the COMMIT (a transaction's pages stay in its page cache until then, and the
write-ahead log is written at the COMMIT) is refused with the same line as a statement's: SQLite undoes the
transaction itself, the committed rows stay, the database stays whole and unlocked, and once the cause is
fixed the same transaction commits on the same connection. A sentence store ingest on a full disk, refused
there, is that one line too.

The limit is a real one, set in a subprocess (`preexec_fn`, or `resource.setrlimit` in its script) as
tests/runs/test_write_refused.py sets it: a write crossing it is cut at the limit, the next one fails.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mountutil import in_mount_namespace
from tldrlab.digest.ingest import ingest_path
from tldrlab.runs import RunStatus, open_registry, start_run
from tldrlab.runs.datasets import open_datasets, register_dataset
from tldrlab.samples import sample_path

SRC = Path(__file__).resolve().parents[2] / "src"
LIMIT = 40 * 1024
"""Over the 32 KiB SQLite gives a database's -shm file when it opens it, under the 300 file entries
`tldrlab data register` records for the directory below (some 44 KB in one row)."""


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "TLDRLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _many_files(directory: Path, count: int = 300) -> Path:
    directory.mkdir()
    for i in range(count):
        (directory / f"part-{i:04d}.txt").write_text(f"line {i} of a text file\n")
    return directory


def _earlier_rows(home: Path, tmp_path: Path) -> tuple[str, str]:
    """A run and a registered data set in the home's database before the refused write: their ids."""
    with start_run("toy", {}) as run:
        pass
    small = tmp_path / "small.txt"
    small.write_text("one line\n")
    record, _ = register_dataset(small)
    return run.id, record.id


def _still_held(home: Path, run_id: str, dataset_id: str) -> None:
    with sqlite3.connect(home / "tldrlab.db") as db:  # opens, whole
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert open_registry().get(run_id).id == run_id
    assert [d.id for d in open_datasets().list()] == [dataset_id]


def test_a_registry_write_over_the_file_size_limit_is_one_line(tldrlab_home: Path, tmp_path: Path) -> None:
    # before: "sqlite3.OperationalError: disk I/O error", a traceback, exit 1
    run_id, dataset_id = _earlier_rows(tldrlab_home, tmp_path)
    data = _many_files(tmp_path / "parts")
    command = [sys.executable, "-m", "tldrlab", "data", "register", str(data), "--format", "text"]
    done = subprocess.run(
        command, env=_env(tldrlab_home), capture_output=True, text=True, timeout=120, preexec_fn=_limited
    )
    assert done.returncode == 9 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line == (
        f"error [file_too_large] file too large for this process's file-size limit ({LIMIT} bytes, "
        f"`ulimit -f`) writing the database {tldrlab_home}/tldrlab.db: raise the limit (`ulimit -f "
        "unlimited`), then try again (it keeps what it held before)"
    ), line
    _still_held(tldrlab_home, run_id, dataset_id)
    # what the message says to do does it
    again = subprocess.run(command, env=_env(tldrlab_home), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith("registered ds-"), again.stderr
    assert len(open_datasets().list()) == 2


TRANSACTION = """
import resource, sys
from tldrlab.errors import WriteRefusedError
from tldrlab.runs.db import connect

db = connect("sqlite:///" + sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
try:
    with db.transaction():  # as the stores write: a thread's sentences and vectors at once
        db.execute("INSERT INTO t (v) VALUES (?)", (b"x" * 30_000_000,))
except WriteRefusedError as exc:
    print(f"[{exc.code}] {exc.message}")
db.execute("INSERT INTO t (v) VALUES (?)", (b"later",))  # the connection is not left in a transaction
print(db.query_one("SELECT COUNT(*) AS n FROM t")["n"])
"""


def test_a_transaction_refused_by_the_file_size_limit_is_undone_and_named(tmp_path: Path) -> None:
    # before: SQLite rolled the transaction back itself, and the ROLLBACK that followed failed with "cannot
    # rollback - no transaction is active", the error the caller got instead of the write's
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        db.executemany("INSERT INTO t (v) VALUES (?)", [(b"earlier",)] * 3)
    script = tmp_path / "transaction.py"
    script.write_text(TRANSACTION)
    limit = 1024 * 1024
    done = subprocess.run(
        [sys.executable, str(script), str(path), str(limit)],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    refused, count = done.stdout.splitlines()
    assert refused.startswith(
        f"[file_too_large] file too large for this process's file-size limit ({limit} bytes, `ulimit -f`) "
        f"writing the database {path}: raise the limit"
    ), refused
    assert count == "4"  # the three earlier rows and the later one: the refused one undone
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [v for (v,) in db.execute("SELECT v FROM t ORDER BY id")] == [b"earlier"] * 3 + [b"later"]


API = """
import json, os, resource, sys
from pathlib import Path
from fastapi.testclient import TestClient
from tldrlab.service.app import create_app

home = Path(os.environ["TLDRLAB_HOME"])
wal = home / "tldrlab.db-wal"
with TestClient(create_app(), raise_server_exceptions=False) as client:
    uploads = 0
    while not wal.exists() or wal.stat().st_size < 36 * 1024:  # over the -shm file's 32 KiB
        answer = client.post(f"/datasets?name=earlier-{uploads}.txt", content=f"line {uploads}\\n".encode())
        assert answer.status_code == 201, answer.text
        uploads += 1
    # the database's write-ahead log is as long as this process may write a file: its next write is refused
    limit = wal.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    answer = client.post("/datasets?name=refused.txt&note=a+note", content=b"one line\\n")
    print(json.dumps({"status": answer.status_code, "body": answer.json(), "uploads": uploads}))
"""


def test_an_api_write_over_the_file_size_limit_is_507_naming_the_cause(
    tldrlab_home: Path, tmp_path: Path
) -> None:
    # before: 500 {"code": "internal_error"} for sqlite3's "disk I/O error"
    script = tmp_path / "api.py"
    script.write_text(API)
    done = subprocess.run(
        [sys.executable, str(script)], env=_env(tldrlab_home), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["status"] == 507, answer
    body = answer["body"]
    assert body["code"] == "file_too_large" and body["request_id"], body
    assert body["message"] == (
        "the server could not store it: file too large; try again once its operator fixed that"
    ), body
    assert str(tldrlab_home) not in json.dumps(body)  # the operator's log has the path, not the client
    uploads = answer["uploads"]
    earlier = sorted(f"earlier-{i}.txt" for i in range(uploads))
    assert sorted(d.name for d in open_datasets().list()) == earlier
    stored = [p.name for p in (tldrlab_home / "datasets").glob("*/*.txt")]
    assert "refused.txt" not in stored  # the file of a data set the database could not record is removed


def test_a_registry_write_on_a_full_disk_is_one_line(tldrlab_home: Path, tmp_path: Path) -> None:
    # the home copied onto a small tmpfs, filled to some 48 KiB free; before: "sqlite3.OperationalError:
    # database or disk is full", a traceback, exit 1
    run_id, dataset_id = _earlier_rows(tldrlab_home, tmp_path)
    data = _many_files(tmp_path / "parts")
    disk = tmp_path / "disk"
    disk.mkdir()
    command = f"{sys.executable} -m tldrlab data register {data} --format text"
    check = (
        f"{sys.executable} -c \"import sqlite3; db = sqlite3.connect('{disk}/tldrlab.db'); "
        "print(db.execute('PRAGMA integrity_check').fetchone()[0], "
        "db.execute('SELECT COUNT(*) FROM datasets').fetchone()[0], "
        "db.execute('SELECT COUNT(*) FROM runs').fetchone()[0])\""
    )
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {disk} && cp -a {tldrlab_home}/. {disk}/ && "
        f"avail=$(df -k --output=avail {disk} | tail -1) && "
        f"dd if=/dev/zero of={disk}/filler bs=1k count=$((avail - 48)) status=none; "
        f"TLDRLAB_HOME={disk} {command}; echo exit $?; {check}"
    )
    done = in_mount_namespace(script, _env(tldrlab_home), timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line == (
        f"error [disk_full] no space left on device writing the database {disk}/tldrlab.db: free some space, "
        "then try again (it keeps what it held before)"
    ), line
    assert done.stdout.splitlines()[-2:] == ["exit 9", "ok 1 1"], done.stdout
    _still_held(tldrlab_home, run_id, dataset_id)


AT_COMMIT = """
import json, os, resource, shutil, sqlite3, sys
from pathlib import Path
from tldrlab.errors import WriteRefusedError
from tldrlab.runs.db import connect

path, cause = Path(sys.argv[1]), sys.argv[2]
wal = Path(f"{path}-wal")
db = connect(f"sqlite:///{path}")
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
with db.transaction():  # the write-ahead log grows past the -shm file's 32 KiB
    db.executemany("INSERT INTO t (v) VALUES (?)", [(b"earlier" * 2000,)] * 3)
said = {"limit": None, "statement_changed": None, "written_before_commit": None, "refused": None}
filler = path.parent / "filler"
if cause == "disk_full":  # the disk holds what its files take now
    with filler.open("wb") as f:
        f.write(bytes(shutil.disk_usage(path.parent).free))
else:  # the write-ahead log is as long as this process may write a file
    said["limit"] = wal.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (said["limit"], resource.RLIM_INFINITY))

later = os.urandom(200_000)  # some 50 pages: in SQLite's page cache (2 MB) until the COMMIT
wal_size = wal.stat().st_size
try:
    with db.transaction():
        said["statement_changed"] = db.execute("INSERT INTO t (v) VALUES (?)", (later,))
        said["written_before_commit"] = wal.stat().st_size - wal_size
except WriteRefusedError as exc:
    said["refused"] = [exc.code, exc.message]
except Exception as exc:
    said["refused"] = [type(exc).__name__, str(exc)]
said["in_transaction"] = db.connection.in_transaction
said["rows"] = [r["n"] for r in db.query("SELECT length(v) AS n FROM t ORDER BY id")]
other = sqlite3.connect(path, timeout=0)  # no lock left held: another writer takes it at once
other.execute("BEGIN IMMEDIATE")
other.execute("ROLLBACK")
said["integrity"] = other.execute("PRAGMA integrity_check").fetchone()[0]
other.close()

if cause == "disk_full":  # what the message says to do does it, on the same connection
    filler.unlink()
else:
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
with db.transaction():
    db.execute("INSERT INTO t (v) VALUES (?)", (later,))
said["rows_then"] = [r["n"] for r in db.query("SELECT length(v) AS n FROM t ORDER BY id")]
said["integrity_then"] = db.query_one("PRAGMA integrity_check")["integrity_check"]
db.close()
print(json.dumps(said))
"""


def _refused_at_commit(cause: str, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """AT_COMMIT run with its database on a small tmpfs it fills (disk_full) or under a file-size limit at
    its write-ahead log's length (file_too_large): the database's path and what the script saw."""
    script = tmp_path / "at_commit.py"
    script.write_text(AT_COMMIT)
    env = _env(tmp_path / "home")
    if cause == "disk_full":
        disk = tmp_path / "disk"
        disk.mkdir()
        path = disk / "store.db"
        command = f"mount -t tmpfs -o size=1m tmpfs {disk} && {sys.executable} {script} {path} {cause}"
        done = in_mount_namespace(command, env, timeout=60)
    else:
        path = tmp_path / "store.db"
        command_line = [sys.executable, str(script), str(path), cause]
        done = subprocess.run(command_line, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return path, json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("cause", ["disk_full", "file_too_large"])
def test_a_write_sqlite_refuses_at_commit_names_the_database_and_keeps_what_was_committed(
    cause: str, tmp_path: Path
) -> None:
    # the transaction's statement succeeded and wrote nothing: SQLite wrote its pages at the COMMIT, and
    # refused there; it rolled the transaction back itself, so a ROLLBACK after it would fail ("cannot
    # rollback - no transaction is active") in place of the refusal
    path, said = _refused_at_commit(cause, tmp_path)
    assert said["statement_changed"] == 1 and said["written_before_commit"] == 0, said
    assert said["refused"] is not None, said
    code, message = said["refused"]
    assert code == cause, said
    if cause == "disk_full":
        assert message == (
            f"no space left on device writing the database {path}: free some space, then try again (it keeps "
            "what it held before)"
        ), message
    else:
        assert message == (
            f"file too large for this process's file-size limit ({said['limit']} bytes, `ulimit -f`) writing "
            f"the database {path}: raise the limit (`ulimit -f unlimited`), then try again (it keeps what it "
            "held before)"
        ), message
    earlier = [len(b"earlier" * 2000)] * 3
    assert said["in_transaction"] is False and said["rows"] == earlier, said  # the refused one undone
    assert said["integrity"] == "ok", said
    assert said["rows_then"] == [*earlier, 200_000] and said["integrity_then"] == "ok", said


def test_ingesting_into_a_sqlite_sentence_store_on_a_full_disk_is_one_line_and_the_run_fails(
    tldrlab_home: Path, tmp_path: Path
) -> None:
    # the home's sentence store (<home>/store) on a small tmpfs, filled to some 64 KiB free (its -shm file
    # and the store's opening take less): the ingest's thread write is refused, once its statements are done
    first, second, _ = json.loads(sample_path("beer_threads").read_text(encoding="utf-8"))
    (tmp_path / "first.json").write_text(json.dumps(first))
    (tmp_path / "second.json").write_text(json.dumps(second))
    ingest_path(tmp_path / "first.json", show_progress=False)
    store = tldrlab_home / "store"
    kept = tmp_path / "kept"
    command = f"{sys.executable} -m tldrlab --quiet ingest {tmp_path}/second.json"
    check = (
        f"{sys.executable} -c \"import sqlite3; db = sqlite3.connect('{store}/sentences.db'); "
        "print(db.execute('PRAGMA integrity_check').fetchone()[0], "
        "db.execute('SELECT COUNT(*) FROM store_threads').fetchone()[0])\""
    )
    script = (
        f"cp -a {store} {kept} && mount -t tmpfs -o size=2m tmpfs {store} && cp -a {kept}/. {store}/ && "
        f"avail=$(df -k --output=avail {store} | tail -1) && "
        f"dd if=/dev/zero of={store}/filler bs=1k count=$((avail - 64)) status=none; "
        f"{command}; echo exit $?; {check}"
    )
    done = in_mount_namespace(script, _env(tldrlab_home), timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    said = (
        f"no space left on device writing the database {store}/sentences.db: free some space, then try again "
        "(it keeps what it held before)"
    )
    assert done.stderr.splitlines() == [f"error [disk_full] {said}"], done.stderr
    assert done.stdout.splitlines()[-2:] == ["exit 9", "ok 1"], done.stdout  # whole, the first thread kept
    (failed,) = [r for r in open_registry().list() if r.status is not RunStatus.COMPLETED]
    assert failed.kind == "ingest" and failed.status is RunStatus.FAILED and failed.error_code == "disk_full"
    assert failed.message == f"failed: {said}"
