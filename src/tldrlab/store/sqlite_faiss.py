"""The embedded sentence store: SQLite holds everything (the truth), a FAISS index file beside it is a cache.

Layout: `<dir>/sentences.db` (threads, post hashes, sentences with float32 vectors as BLOBs) and
`<dir>/sentences.faiss` + `.faiss.json` (the index and the store generation it reflects). Every write bumps a
generation counter in SQLite inside its transaction, and the in-memory index is updated only after that
commit; an index whose generation differs (another process wrote, or this one crashed before saving or before
updating it) is rebuilt from SQLite on open or on the next search. A thread is written in one transaction
(`replace_thread`): its row, its changed posts' sentences and vectors, its removed posts.

Per-thread reads and per-thread search (the highlight path) read vectors straight from SQLite and never touch
FAISS; FAISS answers searches across all threads.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.data.threads import Thread
from tldrlab.runs.db import Database, connect, migrate
from tldrlab.store import tables
from tldrlab.store.base import (
    PostSentences,
    SearchHit,
    SentenceRecord,
    ThreadInfo,
    ThreadSnapshot,
    ThreadState,
)
from tldrlab.store.common import (
    check_identity,
    check_k,
    check_query,
    check_thread_write,
)
from tldrlab.store.faiss_index import FaissIndexConfig, SentenceIndex

SCHEMA: list[list[str]] = [
    [
        *tables.COMMON_SCHEMA,
        "CREATE TABLE IF NOT EXISTS store_sentences (id INTEGER PRIMARY KEY, "
        "thread_id TEXT NOT NULL REFERENCES store_threads(id) ON DELETE CASCADE, post_id TEXT NOT NULL, "
        "post_number INTEGER NOT NULL, sentence_index INTEGER NOT NULL, start_char INTEGER NOT NULL, "
        "end_char INTEGER NOT NULL, text TEXT NOT NULL, author TEXT, url TEXT, vector BLOB NOT NULL)",
        "CREATE INDEX IF NOT EXISTS store_sentences_thread ON store_sentences "
        "(thread_id, post_number, sentence_index)",
        "CREATE INDEX IF NOT EXISTS store_sentences_post ON store_sentences (thread_id, post_id)",
        "INSERT INTO store_meta (key, value) VALUES ('generation', '0') ON CONFLICT (key) DO NOTHING",
    ],
    tables.FOLDED_NAMES_STEP,
]

SELECT_SENTENCE = f"SELECT id, {tables.SENTENCE_COLUMNS} FROM store_sentences"


class SqliteFaissStore:
    """SentenceStore over one SQLite file plus a FAISS index file saved beside it."""

    def __init__(
        self,
        path: Path | str,
        dim: int = 384,
        *,
        embedder: str | None = None,
        index_config: FaissIndexConfig | None = None,
    ) -> None:
        self.path = Path(path)
        self.dim = int(dim)
        self.index_path = self.path.with_suffix(".faiss")
        self.index_config = index_config or FaissIndexConfig()
        self._lock = threading.RLock()
        self.db: Database = connect(f"sqlite:///{self.path}")
        # WAL + synchronous=NORMAL: a commit no longer waits for an fsync (~7x faster measured when ingest
        # committed once per post; it commits once per thread now); a power cut can lose the last commits
        # but never corrupts the file.
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            migrate(self.db, "sentence_store", SCHEMA)
            tables.fold_thread_names(self.db)
            with self.db.transaction():
                new = check_identity(str(self.path), tables.read_meta(self.db), self.dim, embedder)
                tables.write_meta(self.db, new)
            self.index = SentenceIndex(self.dim, self.index_config)
            self._generation = -1
            self._last_save = time.monotonic()
            self._unsaved = False
            generation, count = self._db_state()
            self.index_source = "file"
            """Where the index came from on open: "file" (saved index matched SQLite) or "rebuilt"."""
            if self.index.load(self.index_path, generation, count):
                self._generation = generation
            else:
                self.index_source = "rebuilt"
                self._rebuild()
                self.flush()
        except BaseException:
            self.db.close()
            raise

    # --- generation bookkeeping -------------------------------------------------------------------------

    def _db_state(self) -> tuple[int, int]:
        row = self.db.query_one(
            "SELECT (SELECT value FROM store_meta WHERE key = 'generation') AS generation, "
            "(SELECT COUNT(*) FROM store_sentences) AS count"
        )
        assert row is not None
        return int(row["generation"]), int(row["count"])

    def _bump_generation(self) -> int:
        """Inside a write transaction: the generation before this write (the new one is that plus one)."""
        row = self.db.query_one("SELECT value FROM store_meta WHERE key = 'generation'")
        before = int(row["value"]) if row else 0
        self.db.execute("UPDATE store_meta SET value = ? WHERE key = 'generation'", (str(before + 1),))
        return before

    def _rebuild(self) -> None:
        """Rebuild the FAISS index from SQLite (the truth)."""
        with self._lock:
            with self.db.transaction():  # one consistent snapshot of rows and generation
                generation, _ = self._db_state()
                rows = self.db.query("SELECT id, vector FROM store_sentences ORDER BY id")
            ids = np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))
            vectors = _vectors([r["vector"] for r in rows], self.dim)
            self.index.build(ids, vectors)
            self._generation = generation
            self._unsaved = True

    def _sync(self) -> None:
        """Bring the in-memory index up to date if another process (or a failed update) changed SQLite."""
        # One primary-key lookup per search (not COUNT(*), which would scan the table every query).
        row = self.db.query_one("SELECT value FROM store_meta WHERE key = 'generation'")
        if row is None or int(row["value"]) != self._generation:
            self._rebuild()

    def _after_write(self, before: int, removed: list[int], ids: np.ndarray, vectors: np.ndarray) -> None:
        if before != self._generation:  # someone else wrote in between: our index is stale anyway
            self._rebuild()
        else:
            self.index.remove(removed)
            self.index.add(ids, vectors)
            self._generation = before + 1
            self._unsaved = True
            if self.index.needs_rebuild():
                self._rebuild()
        if time.monotonic() - self._last_save >= self.index_config.save_every_s:
            self.flush()

    # --- SentenceStore -----------------------------------------------------------------------------------

    def get_thread(self, thread_id: str) -> Thread:
        return tables.get_thread(self.db, thread_id)

    def list_threads(self, limit: int = 100, offset: int = 0, q: str | None = None) -> list[ThreadInfo]:
        return tables.list_threads(self.db, limit, offset, q)

    def post_hashes(self, thread_id: str) -> dict[str, str]:
        return tables.post_hashes(self.db, thread_id)

    def thread_state(self, thread_id: str) -> ThreadState:
        return tables.thread_state(self.db, thread_id)

    def replace_thread(
        self,
        thread: Thread,
        posts: list[PostSentences],
        removed_posts: list[str],
        *,
        expected: ThreadState | None = None,
    ) -> None:
        checked = check_thread_write(thread, posts, removed_posts, self.dim)
        vectors = np.concatenate([np.zeros((0, self.dim), np.float32), *(p.vectors for p in checked)])
        with self._lock:
            with self.db.transaction():
                tables.lock_thread(self.db, thread.id, expected)
                tables.write_thread_row(self.db, thread)
                before, removed, ids = self._write_posts(thread.id, checked, list(removed_posts))
                tables.renew_provenance(self.db, thread, {p.post_id for p in checked})
            # FAISS follows only a committed write: a rolled-back one never reaches it, and a process killed
            # between the commit and here leaves a saved index of an older generation, rebuilt on open.
            self._after_write(before, removed, ids, vectors)

    def delete_thread(self, thread_id: str) -> int:
        tables.check_thread_id(thread_id)
        with self._lock:
            with self.db.transaction():
                tables.lock_thread(self.db, thread_id, None)
                removed = tables.delete_thread_rows(self.db, thread_id)
                before = self._bump_generation()
            self._after_write(before, removed, np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32))
        return len(removed)

    def _write_posts(
        self, thread_id: str, posts: list[PostSentences], removed_posts: list[str]
    ) -> tuple[int, list[int], np.ndarray]:
        """Inside a write transaction: replace these posts' sentences, delete the removed posts' sentences;
        returns the generation before the write, the ids of the deleted rows and the ids of the new ones."""
        replaced = {p.post_id for p in posts} | set(removed_posts)
        stored = self.db.query("SELECT id, post_id FROM store_sentences WHERE thread_id = ?", (thread_id,))
        removed = [int(r["id"]) for r in stored if r["post_id"] in replaced]
        self.db.executemany(
            "DELETE FROM store_sentences WHERE thread_id = ? AND post_id = ?",
            [(thread_id, p) for p in sorted(replaced)],
        )
        row = self.db.query_one("SELECT COALESCE(MAX(id), 0) AS top FROM store_sentences")
        next_id = int(row["top"]) + 1 if row else 1
        rows: list[tuple[Any, ...]] = []
        for post in posts:
            for sentence, vector in zip(post.sentences, post.vectors, strict=True):
                rows.append((next_id + len(rows), *tables.sentence_row(sentence), vector.tobytes()))
        self.db.executemany(
            f"INSERT INTO store_sentences (id, {tables.SENTENCE_COLUMNS}, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        hashes = [(post.post_id, post.content_hash) for post in posts]
        tables.write_post_hashes(self.db, thread_id, hashes, removed_posts)
        before = self._bump_generation()
        return before, removed, np.arange(next_id, next_id + len(rows), dtype=np.int64)

    def thread_sentences(self, thread_id: str) -> tuple[list[SentenceRecord], np.ndarray]:
        records, vectors = self._sentences(thread_id)
        if not records:
            tables.require_thread(self.db, thread_id)
        return records, vectors

    def thread_snapshot(self, thread_id: str) -> ThreadSnapshot:
        # One SQLite read transaction for the row and the sentences. The vectors come from the sentence rows'
        # BLOBs in that same transaction, never from FAISS, whose in-memory index follows commits on its own
        # schedule (and another process's not at all until the next search) and so may hold another version.
        def read() -> ThreadSnapshot:
            thread = tables.get_thread(self.db, thread_id)
            return ThreadSnapshot(thread, *self._sentences(thread_id))

        return self.db.read_snapshot(read)

    def _sentences(self, thread_id: str) -> tuple[list[SentenceRecord], np.ndarray]:
        """The thread's sentences and their vectors (from SQLite); none (not an error) for an unknown
        thread."""
        rows = self.db.query(
            f"SELECT {tables.SENTENCE_COLUMNS}, vector FROM store_sentences WHERE thread_id = ? "
            "ORDER BY post_number, sentence_index, id",
            (tables.check_thread_id(thread_id),),
        )
        return [tables.sentence_record(r) for r in rows], _vectors([r["vector"] for r in rows], self.dim)

    def search(self, vector: np.ndarray, k: int = 10, thread_id: str | None = None) -> list[SearchHit]:
        query = check_query(vector, self.dim)
        check_k(k)
        if thread_id is not None:
            records, vectors = self.thread_sentences(thread_id)
            return _top_k(records, vectors @ query[0], k)
        with self._lock:
            self._sync()
            scores, ids = self.index.search(query, k)
        if not len(ids):
            return []
        placeholders = ", ".join("?" for _ in ids)
        rows = self.db.query(f"{SELECT_SENTENCE} WHERE id IN ({placeholders})", [int(i) for i in ids])
        by_id = {int(r["id"]): tables.sentence_record(r) for r in rows}
        # A row deleted by another process since the index was read is simply skipped.
        return [
            SearchHit(by_id[int(i)], float(s)) for s, i in zip(scores, ids, strict=True) if int(i) in by_id
        ]

    def count(self) -> int:
        row = self.db.query_one("SELECT COUNT(*) AS n FROM store_sentences")
        return int(row["n"]) if row else 0

    def flush(self) -> None:
        """Save the FAISS index now (it is also saved on close and periodically after writes)."""
        with self._lock:
            if self._unsaved:
                self.index.save(self.index_path, self._generation)
                self._unsaved = False
            self._last_save = time.monotonic()

    def close(self) -> None:
        with self._lock:
            try:
                self.flush()
            finally:
                self.db.close()

    def __enter__(self) -> SqliteFaissStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _vectors(blobs: list[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()


def _top_k(records: list[SentenceRecord], scores: np.ndarray, k: int) -> list[SearchHit]:
    """The k best by score; ties keep thread order, so results are deterministic."""
    if not records:
        return []
    order = np.argsort(-scores, kind="stable")[:k]
    return [SearchHit(records[i], float(scores[i])) for i in order]
