"""The at-scale sentence store: PostgreSQL with pgvector (`vector(dim)` columns, HNSW cosine index).

Selected when `TLDRLAB_DATABASE_URL` is a postgres URL. Vectors travel as numpy arrays through pgvector's
psycopg adapter. Searches across all threads use the HNSW index (approximate; `hnsw.ef_search` is raised to at
least k per query); searches within one thread materialise that thread's rows first and rank them exactly,
because an HNSW scan followed by a thread filter can return fewer than k rows. A thread is written in one
transaction (`replace_thread`): its row, its changed posts' sentences and vectors, its removed posts.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from tldrlab.data.threads import Thread
from tldrlab.errors import DependencyMissingError
from tldrlab.runs.db import Database, connect, migrate, redact
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


def schema(dim: int) -> list[list[str]]:
    """Migration steps; the dimension is fixed when the store is created (opening with another is refused)."""
    return [
        [
            *tables.COMMON_SCHEMA,
            "CREATE TABLE IF NOT EXISTS store_sentences (id BIGSERIAL PRIMARY KEY, "
            "thread_id TEXT NOT NULL REFERENCES store_threads(id) ON DELETE CASCADE, post_id TEXT NOT NULL, "
            "post_number INTEGER NOT NULL, sentence_index INTEGER NOT NULL, start_char INTEGER NOT NULL, "
            "end_char INTEGER NOT NULL, text TEXT NOT NULL, author TEXT, url TEXT, "
            f"embedding vector({dim}) NOT NULL)",
            "CREATE INDEX IF NOT EXISTS store_sentences_thread ON store_sentences "
            "(thread_id, post_number, sentence_index)",
            "CREATE INDEX IF NOT EXISTS store_sentences_post ON store_sentences (thread_id, post_id)",
            "CREATE INDEX IF NOT EXISTS store_sentences_embedding ON store_sentences "
            "USING hnsw (embedding vector_cosine_ops)",
        ],
        tables.FOLDED_NAMES_STEP,
    ]


def _asynchronous_commit(connection: Any) -> None:
    connection.execute("SET synchronous_commit = off")


class PostgresPgvectorStore:
    """SentenceStore in PostgreSQL + pgvector (tables prefixed `store_`, shared with the run registry)."""

    def __init__(self, url: str, dim: int = 384, *, embedder: str | None = None, ef_search: int = 64) -> None:
        self.url = url
        self.dim = int(dim)
        self.ef_search = int(ef_search)
        """HNSW candidate list size for searches across threads (raised to k when k is larger)."""
        self._lock = threading.RLock()
        self.db: Database = connect(url)
        try:
            self._setup(embedder)
        except BaseException:
            self.db.close()
            raise

    def _setup(self, embedder: str | None) -> None:
        import psycopg

        try:
            from pgvector.psycopg import register_vector
        except ModuleNotFoundError as exc:
            raise DependencyMissingError("the postgres store needs pgvector (pip install pgvector)") from exc
        try:
            self.db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise DependencyMissingError(
                f"cannot enable the pgvector extension on this PostgreSQL server ({exc}); install pgvector "
                "on the server or ask an administrator to run CREATE EXTENSION vector"
            ) from exc
        # The adapter needs the extension's type oid, so it is registered after CREATE EXTENSION (on every
        # connection the store opens: one opened again after PostgreSQL dropped the first needs it too).
        self.db.on_connect(register_vector)
        # Ingest commits once per thread: not waiting for the WAL flush doubled the write rate in our test. A
        # crash can lose the last commits (re-ingesting restores them) but never corrupts the database.
        self.db.on_connect(_asynchronous_commit)
        migrate(self.db, "sentence_store", schema(self.dim))
        tables.fold_thread_names(self.db)
        with self.db.transaction():
            where = redact(self.url)
            new = check_identity(where, tables.read_meta(self.db), self.dim, embedder)
            tables.write_meta(self.db, new)

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
        with self.db.transaction():
            tables.lock_thread(self.db, thread.id, expected)
            tables.write_thread_row(self.db, thread)
            self._write_posts(thread.id, checked, list(removed_posts))
            tables.renew_provenance(self.db, thread, {p.post_id for p in checked})

    def delete_thread(self, thread_id: str) -> int:
        tables.check_thread_id(thread_id)
        with self.db.transaction():
            tables.lock_thread(self.db, thread_id, None)
            return len(tables.delete_thread_rows(self.db, thread_id))

    def _write_posts(self, thread_id: str, posts: list[PostSentences], removed_posts: list[str]) -> None:
        """Inside a transaction: replace these posts' sentences, delete the removed posts' sentences."""
        replaced = sorted({p.post_id for p in posts} | set(removed_posts))
        if replaced:
            self.db.executemany(
                "DELETE FROM store_sentences WHERE thread_id = ? AND post_id = ?",
                [(thread_id, p) for p in replaced],
            )
        rows = [
            (*tables.sentence_row(sentence), vector)
            for post in posts
            for sentence, vector in zip(post.sentences, post.vectors, strict=True)
        ]
        if rows:
            self.db.executemany(
                f"INSERT INTO store_sentences ({tables.SENTENCE_COLUMNS}, embedding) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        hashes = [(post.post_id, post.content_hash) for post in posts]
        tables.write_post_hashes(self.db, thread_id, hashes, removed_posts)

    def _query_binary(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        """A query whose results come back in binary: pgvector then loads vectors with np.frombuffer instead
        of parsing 384 decimal numbers per row (a thread's vectors load several times faster)."""
        return self.db.query(sql, params, binary=True)

    def thread_sentences(self, thread_id: str) -> tuple[list[SentenceRecord], np.ndarray]:
        records, vectors = self._sentences(thread_id)
        if not records:
            tables.require_thread(self.db, thread_id)
        return records, vectors

    def thread_snapshot(self, thread_id: str) -> ThreadSnapshot:
        # REPEATABLE READ: the sentences are read in the snapshot the thread row was read in
        def read() -> ThreadSnapshot:
            thread = tables.get_thread(self.db, thread_id)
            return ThreadSnapshot(thread, *self._sentences(thread_id))

        return self.db.read_snapshot(read)

    def _sentences(self, thread_id: str) -> tuple[list[SentenceRecord], np.ndarray]:
        """The thread's sentences and vectors; none (not an error) for an unknown thread."""
        rows = self._query_binary(
            f"SELECT {tables.SENTENCE_COLUMNS}, embedding FROM store_sentences WHERE thread_id = ? "
            "ORDER BY post_number, sentence_index, id",
            (tables.check_thread_id(thread_id),),
        )
        if not rows:
            return [], np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.stack([_as_array(r["embedding"]) for r in rows]).astype(np.float32, copy=False)
        return [tables.sentence_record(r) for r in rows], vectors

    def search(self, vector: np.ndarray, k: int = 10, thread_id: str | None = None) -> list[SearchHit]:
        query = check_query(vector, self.dim)[0]
        check_k(k)
        if thread_id is not None:
            rows = self.db.query(
                f"WITH t AS MATERIALIZED (SELECT id, {tables.SENTENCE_COLUMNS}, embedding "
                "FROM store_sentences WHERE thread_id = ?) "
                f"SELECT {tables.SENTENCE_COLUMNS}, 1 - (embedding <=> ?) AS score FROM t "
                "ORDER BY embedding <=> ?, post_number, sentence_index, id LIMIT ?",
                (tables.check_thread_id(thread_id), query, query, k),
            )
            if not rows:
                tables.require_thread(self.db, thread_id)
        else:
            with self.db.transaction():
                self.db.execute(f"SET LOCAL hnsw.ef_search = {min(1000, max(self.ef_search, int(k)))}")
                rows = self.db.query(
                    f"SELECT {tables.SENTENCE_COLUMNS}, 1 - (embedding <=> ?) AS score FROM store_sentences "
                    "ORDER BY embedding <=> ? LIMIT ?",
                    (query, query, k),
                )
        return [SearchHit(tables.sentence_record(r), float(r["score"])) for r in rows]

    def count(self) -> int:
        row = self.db.query_one("SELECT COUNT(*) AS n FROM store_sentences")
        return int(row["n"]) if row else 0

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> PostgresPgvectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_array(value: Any) -> np.ndarray:
    """pgvector's loader returns a `Vector` (newer versions) or a numpy array (older ones)."""
    return value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value, dtype=np.float32)
