"""A PostgreSQL write its server refuses for a full disk (SQLSTATE 53100, disk_full) under the run registry, a
sentence store, the digest cache, the LVM concept store or the API. Every store built on `runs.db.Database`
(the registry, the job queue, the data sets, the pgvector sentence store, the digest cache, the concept store)
now says it as SQLite's full disk is said (tests/runs/test_sqlite_write_refused.py): `error [disk_full] no
space left on device writing the database postgresql://user:***@host/db: ...` (exit 9), a 507 with its code
from the API, the run failed with code disk_full. Before, psycopg's DiskFull named the run's own directory
("no space left on device (<run dir>)"), reached a digest stream as an internal error, or a caller as
psycopg's traceback.

The full disk is a real one: the database's tables are on a tmpfs tablespace (conftest's
`small_disk_postgres`), cut to what its files take once the earlier rows are written, so the next write that
needs a page more is refused; PostgreSQL undoes that transaction alone, and once space is freed the same
write succeeds beside the earlier rows. A write the server makes at the COMMIT (a deferred constraint
trigger's) is refused with the same line as a statement's, and a refused row of a pipelined insert
(`executemany`) with that line alone, without psycopg's warning of the rows it skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient

import tldrlab
from mountutil import resize_tmpfs, tmpfs_used
from tldrlab.config import get_settings
from tldrlab.digest.ingest import ingest_path, open_sentence_store
from tldrlab.errors import DiskFullError
from tldrlab.lvm.store import ConceptIn, ConceptStore, open_concept_store
from tldrlab.runs import RunStatus, open_registry, start_run
from tldrlab.runs.db import connect
from tldrlab.samples import sample_path
from tldrlab.service.app import create_app

SRC = Path(tldrlab.__file__).resolve().parents[1]
"""The sources the test imports, which its commands run too."""
ROOM = 16 * 1024 * 1024
"""The tablespace's size while the earlier rows are written, and once space is freed: every table's and
index's first pages with room to spare."""


def _named(url: str) -> str:
    """How a refusal names the database `url`: without its password."""
    return url.replace(f":{urlsplit(url).password}@", ":***@")


def _refusal_words(url: str) -> str:
    return (
        f"no space left on device writing the database {_named(url)}: free some space, then try again (it "
        "keeps what it held before)"
    )


def _fill(mount: Path) -> None:
    """The tablespace holds what its files take now: a write needing a page more is refused."""
    resize_tmpfs(mount, tmpfs_used(mount))


@pytest.fixture
def postgres_home(
    tldrlab_home: Path, small_disk_postgres: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    """The test's home with its database (registry, stores, cache) on the small-disk PostgreSQL."""
    url, mount = small_disk_postgres
    resize_tmpfs(mount, ROOM)
    monkeypatch.setenv("TLDRLAB_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url, mount
    get_settings.cache_clear()


def _threads() -> list[dict[str, Any]]:
    return list(json.loads(sample_path("beer_threads").read_text(encoding="utf-8")))


def test_a_run_whose_postgres_registry_fills_the_disk_fails_naming_the_database(
    postgres_home: tuple[str, Path],
) -> None:
    # before: "no space left on device (<the run's directory>): free some space, then resume the run ...",
    # the run's own directory named for the database's full disk
    url, mount = postgres_home
    with start_run("toy", {}) as earlier:
        earlier.set_summary(note="before")
    _fill(mount)
    summary = {"samples": secrets.token_hex(100_000)}  # 200 KB, past the pages the runs table has
    with pytest.raises(DiskFullError) as refused, start_run("toy", {}) as run:
        run.set_summary(**summary)

    said = refused.value.message
    assert said == _refusal_words(url), said
    assert refused.value.details["public_message"] == DiskFullError.for_clients()
    record = open_registry().get(run.id)
    assert record.status is RunStatus.FAILED and record.error_code == "disk_full"
    assert record.message == f"failed: {said}" and record.metrics == {}
    assert open_registry().get(earlier.id).metrics == {"note": "before"}

    resize_tmpfs(mount, ROOM)  # what the message says to do does it
    with start_run("toy", {}) as again:
        again.set_summary(**summary)
    assert open_registry().get(again.id).metrics == summary
    assert open_registry().get(earlier.id).status is RunStatus.COMPLETED


def test_ingesting_into_a_full_postgres_sentence_store_is_one_line_and_the_run_fails(
    postgres_home: tuple[str, Path], tmp_path: Path
) -> None:
    # before: "error [disk_full] no space left on device (<the ingest run's directory>): free some space, then
    # resume the run ...": the store's psycopg DiskFull taken for a refused write of the run's directory
    url, mount = postgres_home
    first, *rest = _threads()
    (tmp_path / "first.json").write_text(json.dumps(first))
    (tmp_path / "rest.json").write_text(json.dumps(rest))
    ingest_path(tmp_path / "first.json", show_progress=False)
    _fill(mount)

    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    command = [sys.executable, "-m", "tldrlab", "--quiet", "ingest", str(tmp_path / "rest.json")]
    refused = subprocess.run(command, env=env, text=True, capture_output=True, timeout=120)
    assert refused.returncode == 9 and "Traceback" not in refused.stderr, refused.stderr
    (line,) = refused.stderr.splitlines()
    assert line == f"error [disk_full] {_refusal_words(url)}", line
    (failed,) = [r for r in open_registry().list() if r.status is not RunStatus.COMPLETED]
    assert failed.kind == "ingest" and failed.status is RunStatus.FAILED and failed.error_code == "disk_full"
    assert failed.message == f"failed: {_refusal_words(url)}"

    resize_tmpfs(mount, ROOM)  # what the message says to do does it, beside the thread stored before
    ingest_path(tmp_path / "rest.json", show_progress=False)
    store, _ = open_sentence_store()
    with store:
        assert sorted(t.id for t in store.list_threads()) == sorted(t["id"] for t in _threads())
        assert len(store.get_thread(first["id"]).posts) == len(first["posts"])


def _sse_events(text: str) -> list[tuple[str, Any]]:
    """The stream's events: (name, its data as JSON, or as text where it is none)."""
    events: list[tuple[str, Any]] = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        name = next(line[6:].strip() for line in lines if line.startswith("event:"))
        data = "\n".join(line[5:].removeprefix(" ") for line in lines if line.startswith("data:"))
        with contextlib.suppress(ValueError):
            data = json.loads(data)
        events.append((name, data))
    return events


def test_an_api_ingest_into_a_full_postgres_store_is_507_naming_the_database_to_the_operator(
    postgres_home: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # before: the same 507, but the server's log said "a write was refused: no space left on device" and
    # psycopg's traceback, never which database
    url, mount = postgres_home
    first, second, _ = _threads()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        assert client.post("/threads", json=first).status_code == 201
        _fill(mount)
        answer = client.post("/threads", json=second)
        assert answer.status_code == 507, answer.text
        body = answer.json()
        assert body["code"] == "disk_full" and body["request_id"], body
        assert body["message"] == DiskFullError.for_clients(), body
        assert urlsplit(url).path.strip("/") not in answer.text  # the operator's log names the database
        assert any(_refusal_words(url) in record.getMessage() for record in caplog.records), caplog.text

        assert client.get(f"/threads/{second['id']}").status_code == 404  # the refused ingest was undone
        kept = client.get(f"/threads/{first['id']}").json()
        assert len(kept["posts"]) == len(first["posts"])
        resize_tmpfs(mount, ROOM)
        assert client.post("/threads", json=second).status_code == 201
        assert sorted(t["id"] for t in client.get("/threads").json()["threads"]) == sorted(
            [first["id"], second["id"]]
        )


def test_a_digest_whose_postgres_cache_write_is_refused_still_streams_whole_and_says_it_was_not_cached(
    postgres_home: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # before: the stream's error event was {"code": "internal_error", "message": "internal error: DiskFull"}
    # for the digest cache's refused INSERT; then an `error` disk_full in place of the digest the reader
    # waited for, which was made and whole: only its cache entry could not be written
    url, mount = postgres_home
    thread = _threads()[0]
    digest_request = {"thread_id": thread["id"], "k": 6, "max_bullets": 3}
    with TestClient(create_app()) as client:
        assert client.post("/threads", json=thread).status_code == 201
        _fill(mount)  # the digest cache's table has no page yet
        with caplog.at_level(logging.WARNING, logger="tldrlab"):
            events = _sse_events(client.post("/stream_summary", json=digest_request).text)
        assert [name for name, _ in events][-3:] == ["notice", "digest", "done"], events
        notice = "this TL;DR was not cached: no space left on device; the next request makes it again"
        assert events[-3][1] == {"message": notice}, events
        digest = events[-2][1]
        assert digest["bullets"] and digest["cached"] is False and notice in digest["notices"], digest
        assert "***" not in notice and "postgresql" not in notice  # no server address for the client
        logged = [r.getMessage() for r in caplog.records if "digest not cached" in r.getMessage()]
        assert logged and _named(url) in logged[0], logged  # the operator's log names the database

        resize_tmpfs(mount, ROOM)
        again = _sse_events(client.post("/stream_summary", json=digest_request).text)
        assert [name for name, _ in again][-2:] == ["digest", "done"], again
        assert again[-2][1]["cached"] is False and again[-2][1]["bullets"] == digest["bullets"]
        cached = _sse_events(client.post("/stream_summary", json=digest_request).text)
        assert cached[-2][1]["cached"] is True
        assert cached[-2][1]["bullets"] == digest["bullets"]


def _article(store: ConceptStore, article_id: str, count: int) -> None:
    texts = [f"Concept {i} of article {article_id}." for i in range(count)]
    concepts, offset = [], 0
    for i, text in enumerate(texts):
        concepts.append(ConceptIn(position=i, start=offset, end=offset + len(text), text=text))
        offset += len(text) + 1
    vectors = np.random.default_rng(count).normal(size=(count, 384)).astype(np.float32)
    store.replace_article(
        source="wiki",
        article_id=article_id,
        concepts=concepts,
        vectors=vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
        embedder="minilm",
        chunking="sentence",
    )


def test_a_concept_store_write_on_a_full_postgres_disk_names_the_database(
    postgres_home: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # before: psycopg.errors.DiskFull ("could not extend file ...: No space left on device"), a traceback;
    # then, psycopg's executemany (a pipeline) also logged "error ignored terminating <psycopg.Pipeline
    # [INERROR, pipeline=ON] (user=... database=...) at 0x...>: pipeline aborted" beside the DiskFullError,
    # on stderr of a program using tldrlab without a logging setup, in the log of one that has one
    url, mount = postgres_home
    store = open_concept_store()
    try:
        _article(store, "earlier", 3)
        _fill(mount)
        with caplog.at_level(logging.DEBUG), pytest.raises(DiskFullError) as refused:
            _article(store, "refused", 200)  # 300 KB of vectors, past the pages the table has
        assert refused.value.message == _refusal_words(url)
        assert [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert store.sources() == {"wiki": 3}  # the refused article's transaction was undone

        resize_tmpfs(mount, ROOM)
        _article(store, "refused", 200)
        assert store.sources() == {"wiki": 203}
    finally:
        store.close()


def test_a_write_postgres_refuses_at_commit_names_the_database_and_keeps_what_was_committed(
    small_disk_postgres: tuple[str, Path],
) -> None:
    # a write deferred to the COMMIT (here a deferred constraint trigger's) is refused after every statement
    # of the transaction succeeded: the COMMIT's refusal is the same line as a statement's
    url, mount = small_disk_postgres
    resize_tmpfs(mount, ROOM)
    db = connect(url)
    try:
        db.execute("CREATE TABLE posts (id integer PRIMARY KEY)")
        db.execute("CREATE TABLE post_audit (post_id integer, snapshot text)")
        # 128 KB of random hex each (too random to compress), past the free room of any page written before
        db.execute(
            "CREATE FUNCTION audit_post() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO post_audit SELECT NEW.id, string_agg(md5(random()::text), '') "
            "FROM generate_series(1, 4000); RETURN NULL; END $$"
        )
        db.execute(
            "CREATE CONSTRAINT TRIGGER audit_post_at_commit AFTER INSERT ON posts "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_post()"
        )
        with db.transaction():
            db.execute("INSERT INTO posts VALUES (1)")
        _fill(mount)

        statements_done = False
        with pytest.raises(DiskFullError) as refused, db.transaction():
            db.execute("INSERT INTO posts VALUES (2)")  # a row on the page posts has: not refused here
            statements_done = True
        assert statements_done  # the refusal came at the COMMIT
        assert refused.value.message == _refusal_words(url)
        assert refused.value.details["public_message"] == DiskFullError.for_clients()
        assert [r["id"] for r in db.query("SELECT id FROM posts")] == [1]  # the refused transaction undone
        assert [r["post_id"] for r in db.query("SELECT post_id FROM post_audit")] == [1]

        resize_tmpfs(mount, ROOM)  # what the message says to do does it, on the same connection
        with db.transaction():
            db.execute("INSERT INTO posts VALUES (2)")
        assert [r["id"] for r in db.query("SELECT id FROM posts ORDER BY id")] == [1, 2]
        assert [r["post_id"] for r in db.query("SELECT post_id FROM post_audit ORDER BY post_id")] == [1, 2]
    finally:
        db.close()
