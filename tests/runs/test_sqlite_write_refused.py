"""A SQLite write the system refuses: the process's file-size limit (`ulimit -f`, RLIMIT_FSIZE) or a full
disk under the run registry, the data-set registry, the job queue or a sentence store (every SQLite database
goes through `runs.db.Database`). SQLite passes no errno on: the limit's EFBIG reached the user as sqlite3's
"disk I/O error" (a traceback on the command line, a 500 from the API), a full disk as "database or disk is
full". Now it is the error any other refused write is (`error [file_too_large]`, exit 9; a 507 with its code),
and what the database held before is still there.

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

from mountutil import in_mount_namespace
from tldrlab.runs import open_registry, start_run
from tldrlab.runs.datasets import open_datasets, register_dataset

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
