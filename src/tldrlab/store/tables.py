"""SQL both stores run unchanged (through `tldrlab.runs.db`): store metadata, threads and post hashes.

Only the `store_sentences` table differs between backends (a float32 BLOB in SQLite, `vector(dim)` in
PostgreSQL), so its schema and queries live with each store. Every table is prefixed `store_` because the
PostgreSQL store shares its database with the run registry and the job queue.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from tldrlab.data.threads import STORED, Thread
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.runs.db import Database
from tldrlab.store.base import SentenceRecord, ThreadChangedError, ThreadInfo, ThreadState, post_provenance

COMMON_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS store_threads (id TEXT PRIMARY KEY, title TEXT NOT NULL, "
    "content_hash TEXT NOT NULL, posts INTEGER NOT NULL, data TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS store_post_hashes (thread_id TEXT NOT NULL REFERENCES store_threads(id) "
    "ON DELETE CASCADE, post_id TEXT NOT NULL, content_hash TEXT NOT NULL, PRIMARY KEY (thread_id, post_id))",
]

# The thread filter's case folding is Python's str.casefold, stored beside each row: the databases' own LOWER
# differ (SQLite's folds ASCII only, PostgreSQL's follows the server's locale), so "É" found "é" on one
# backend and not on the other. Rows written before this step are folded on open (`fold_thread_names`).
FOLDED_NAMES_STEP = [
    "ALTER TABLE store_threads ADD COLUMN id_folded TEXT",
    "ALTER TABLE store_threads ADD COLUMN title_folded TEXT",
]

SENTENCE_COLUMNS = "thread_id, post_id, post_number, sentence_index, start_char, end_char, text, author, url"


def read_meta(db: Database) -> dict[str, str]:
    return {row["key"]: row["value"] for row in db.query("SELECT key, value FROM store_meta")}


def write_meta(db: Database, values: dict[str, str]) -> None:
    for key, value in values.items():
        db.execute(
            "INSERT INTO store_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def check_thread_id(thread_id: str) -> str:
    if not isinstance(thread_id, str) or not thread_id.strip():
        raise InvalidInputError(f"a thread id must be a non-empty string, got {thread_id!r}")
    if "\x00" in thread_id:  # PostgreSQL's text cannot hold it (a 500 there); threads with one are refused
        raise InvalidInputError(f"a thread id must not contain NUL characters (U+0000), got {thread_id!r}")
    return thread_id


def fold_thread_names(db: Database) -> None:
    """Fill the folded id/title of rows written before they were stored (one query when none is missing)."""
    rows = db.query("SELECT id, title FROM store_threads WHERE id_folded IS NULL OR title_folded IS NULL")
    if rows:
        with db.transaction():
            db.executemany(
                "UPDATE store_threads SET id_folded = ?, title_folded = ? WHERE id = ?",
                [(row["id"].casefold(), row["title"].casefold(), row["id"]) for row in rows],
            )


def write_thread_row(db: Database, thread: Thread) -> None:
    check_thread_id(thread.id)
    db.execute(
        "INSERT INTO store_threads "
        "(id, title, content_hash, posts, data, updated_at, id_folded, title_folded) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET title = excluded.title, content_hash = excluded.content_hash, "
        "posts = excluded.posts, data = excluded.data, updated_at = excluded.updated_at, "
        "id_folded = excluded.id_folded, title_folded = excluded.title_folded",
        (
            thread.id,
            thread.title,
            thread.content_hash(),
            len(thread.posts),
            thread.model_dump_json(),
            datetime.now(UTC).isoformat(timespec="microseconds"),
            thread.id.casefold(),
            thread.title.casefold(),
        ),
    )


def require_thread(db: Database, thread_id: str) -> None:
    if (
        db.query_one("SELECT 1 AS found FROM store_threads WHERE id = ?", (check_thread_id(thread_id),))
        is None
    ):
        raise NotFoundError(f"thread {thread_id!r} is not in the store: ingest it first")


def delete_thread_rows(db: Database, thread_id: str) -> list[int]:
    """Inside a write transaction (the thread locked): the thread's row, its posts' hashes and its sentences
    deleted; returns the deleted sentences' ids. NotFoundError when the store has no such thread."""
    require_thread(db, thread_id)
    rows = db.query("SELECT id FROM store_sentences WHERE thread_id = ?", (thread_id,))
    # children first: SQLite enforces the REFERENCES ... ON DELETE CASCADE only with its foreign keys on
    db.execute("DELETE FROM store_sentences WHERE thread_id = ?", (thread_id,))
    db.execute("DELETE FROM store_post_hashes WHERE thread_id = ?", (thread_id,))
    db.execute("DELETE FROM store_threads WHERE id = ?", (thread_id,))
    return [int(r["id"]) for r in rows]


def get_thread(db: Database, thread_id: str) -> Thread:
    row = db.query_one("SELECT data FROM store_threads WHERE id = ?", (check_thread_id(thread_id),))
    if row is None:
        raise NotFoundError(f"thread {thread_id!r} is not in the store: ingest it first")
    return Thread.model_validate_json(row["data"], context=STORED)


def like_pattern(text: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching `text` anywhere: its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_threads(db: Database, limit: int, offset: int, q: str | None = None) -> list[ThreadInfo]:
    """The newest threads first; `q` keeps those whose id or title holds it, ignoring case as Python's
    str.casefold does ("É" finds "é", "STRASSE" finds "Straße") on both backends. The filter runs in SQL, so
    a thread far down a big store is found without reading every row into Python."""
    if limit < 0 or offset < 0:
        raise InvalidInputError(f"limit and offset must not be negative (got limit={limit}, offset={offset})")
    where = ""
    params: tuple[str, ...] = ()
    if q:
        if "\x00" in q:  # PostgreSQL's text cannot hold it; no thread id or title does either
            raise InvalidInputError(f"a thread filter must not contain NUL characters (U+0000), got {q!r}")
        pattern = like_pattern(q.casefold())
        # against the stored casefolded names, not the databases' LOWER (see FOLDED_NAMES_STEP)
        where = "WHERE t.id_folded LIKE ? ESCAPE '\\' OR t.title_folded LIKE ? ESCAPE '\\' "
        params = (pattern, pattern)
    rows = db.query(
        "SELECT t.id, t.title, t.posts, t.content_hash, "
        "(SELECT COUNT(*) FROM store_sentences s WHERE s.thread_id = t.id) AS sentences "
        f"FROM store_threads t {where}ORDER BY t.updated_at DESC, t.id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return [
        ThreadInfo(
            id=row["id"],
            title=row["title"],
            posts=int(row["posts"]),
            sentences=int(row["sentences"]),
            content_hash=row["content_hash"],
        )
        for row in rows
    ]


def post_hashes(db: Database, thread_id: str) -> dict[str, str]:
    rows = db.query(
        "SELECT post_id, content_hash FROM store_post_hashes WHERE thread_id = ?",
        (check_thread_id(thread_id),),
    )
    return {row["post_id"]: row["content_hash"] for row in rows}


def row_fingerprint(data: str) -> str:
    """The fingerprint of a stored thread row's JSON: equal exactly when the stored row is."""
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def thread_state(db: Database, thread_id: str) -> ThreadState:
    # The row is read before the hashes: a writer committing in between makes the pair one that no longer
    # matches the store, so the write computed against it is refused (and recomputed), never let through.
    row = db.query_one("SELECT data FROM store_threads WHERE id = ?", (check_thread_id(thread_id),))
    return ThreadState(post_hashes(db, thread_id), None if row is None else row_fingerprint(row["data"]))


def lock_thread(db: Database, thread_id: str, expected: ThreadState | None) -> None:
    """Inside a write transaction: hold the thread against other writers until the commit and, when
    `expected` is given, refuse the write if the stored post hashes or thread row are no longer those (the
    row too: two writers changing only the title, or a post's votes, would otherwise overwrite each other
    unnoticed). SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL takes a transaction-scoped
    advisory lock on the thread id (its row may not exist yet, so `SELECT ... FOR UPDATE` could lock
    nothing)."""
    if db.is_postgres:
        db.query_one("SELECT pg_advisory_xact_lock(hashtextextended(?, 0)) AS locked", (thread_id,))
    if expected is None:
        return
    stored = thread_state(db, thread_id)
    if stored == expected:
        return
    changed = sorted(
        k
        for k in set(stored.post_hashes) | set(expected.post_hashes)
        if stored.post_hashes.get(k) != expected.post_hashes.get(k)
    )
    # The row holds the posts' text too, so it differs whenever a post does: name the posts then, and the
    # thread-level fields only when they are all that changed.
    if changed:
        what = f"posts {changed[:5]}{' ...' if len(changed) > 5 else ''}"
    elif expected.row is None:
        what = "it was not stored yet when this write was computed"
    else:
        what = "its title or other thread fields, or a post's metadata"
    raise ThreadChangedError(
        f"thread {thread_id!r} was changed by another writer since this write was computed ({what}): "
        "nothing was written"
    )


def write_post_hashes(
    db: Database, thread_id: str, written: list[tuple[str, str]], removed: list[str]
) -> None:
    """The content hashes of a thread's posts after a write: (post id, hash) of each post written, and the
    posts removed (one statement each for all of them, inside the write's transaction)."""
    if written:
        db.executemany(
            "INSERT INTO store_post_hashes (thread_id, post_id, content_hash) VALUES (?, ?, ?) "
            "ON CONFLICT (thread_id, post_id) DO UPDATE SET content_hash = excluded.content_hash",
            [(thread_id, post_id, content_hash) for post_id, content_hash in written],
        )
    if removed:
        db.executemany(
            "DELETE FROM store_post_hashes WHERE thread_id = ? AND post_id = ?",
            [(thread_id, p) for p in removed],
        )


def renew_provenance(db: Database, thread: Thread, written: set[str]) -> None:
    """Inside a write transaction: the sentences a write keeps (posts whose text did not change, so they
    are not in `written`) take their post's number, author and link as the thread now has them. A post
    deleted above another renumbers it, a moved thread changes the links of posts without their own, and
    nothing of that changes the text the sentences and vectors come from."""
    posts = {p.id: p for p in thread.posts if p.id not in written}
    if not posts:
        return
    rows = db.query(
        "SELECT DISTINCT post_id, post_number, author, url FROM store_sentences WHERE thread_id = ?",
        (thread.id,),
    )
    changes = []
    for row in rows:
        post = posts.get(row["post_id"])
        if post is None:
            continue
        now = post_provenance(thread, post)
        if (int(row["post_number"]), row["author"], row["url"]) != now:
            changes.append((*now, thread.id, post.id))
    if changes:
        db.executemany(
            "UPDATE store_sentences SET post_number = ?, author = ?, url = ? "
            "WHERE thread_id = ? AND post_id = ?",
            sorted(set(changes), key=lambda change: change[-1]),
        )


def sentence_row(record: SentenceRecord) -> tuple[Any, ...]:
    return (
        record.thread_id,
        record.post_id,
        record.post_number,
        record.sentence_index,
        record.start,
        record.end,
        record.text,
        record.author,
        record.url,
    )


def sentence_record(row: dict[str, Any]) -> SentenceRecord:
    return SentenceRecord(
        thread_id=row["thread_id"],
        post_id=row["post_id"],
        post_number=int(row["post_number"]),
        sentence_index=int(row["sentence_index"]),
        start=int(row["start_char"]),
        end=int(row["end_char"]),
        text=row["text"],
        author=row["author"],
        url=row["url"],
    )
