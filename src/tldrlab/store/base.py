"""The sentence-store interface shared by every backend (`sqlite_faiss`, `postgres_pgvector`).

A store keeps threads (for display) and their sentences with provenance and unit-normalised vectors (for
highlights and search). Ingest writes a thread with `replace_thread`: its row, its changed posts' sentences
and vectors and the removal of its dropped posts, together in one transaction, so a failure half-way (a
refused row, a killed process) leaves the thread as it was, never new text over old sentences.
`post_hashes` tells which posts changed, so unchanged posts keep their sentences; the write carries the
hashes it was computed against and is refused (`ThreadChangedError`) when another writer changed the thread
in between, so two processes ingesting one thread at once never leave it mixed. One shared test suite runs
against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tldrlab.data.threads import Thread
from tldrlab.errors import ConflictError


class ThreadChangedError(ConflictError):
    """`replace_thread` was computed against post hashes that another writer has changed since: nothing was
    written; re-read the hashes, recompute the changed posts and write again."""

    code = "thread_changed"


@dataclass(frozen=True)
class SentenceRecord:
    """A stored sentence and where it came from: enough to cite it and to highlight it in place."""

    thread_id: str
    post_id: str
    post_number: int
    sentence_index: int
    """Index of the sentence within its post."""
    start: int
    """Character offset of the sentence in the post's text."""
    end: int
    text: str
    author: str | None = None
    url: str | None = None
    """Link to the post."""


@dataclass(frozen=True)
class PostSentences:
    """One post's new sentences and their vectors, for `replace_thread`."""

    post_id: str
    content_hash: str
    """Content hash of the post text the sentences were split from (`Post.content_hash`)."""
    sentences: list[SentenceRecord]
    vectors: np.ndarray
    """float32, shape (len(sentences), dim)."""


@dataclass(frozen=True)
class SearchHit:
    sentence: SentenceRecord
    score: float
    """Cosine similarity (vectors are unit-normalised)."""


@dataclass(frozen=True)
class ThreadInfo:
    id: str
    title: str
    posts: int
    sentences: int
    content_hash: str


class SentenceStore(Protocol):
    """What the digest service needs from a store."""

    dim: int
    """Vector dimension; vectors of any other dimension are refused with DimensionMismatchError."""

    def replace_thread(
        self,
        thread: Thread,
        posts: list[PostSentences],
        removed_posts: list[str],
        *,
        expected_hashes: dict[str, str] | None = None,
    ) -> None:
        """Store or replace the thread's row, replace the sentences of `posts` and delete those of
        `removed_posts`, all in one transaction: everything is written or nothing is. Vectors and sentences
        are checked before the transaction opens. `expected_hashes` (what `post_hashes` returned when the
        write was computed) is compared inside the transaction, with the thread locked against other
        writers; if the stored hashes differ, ThreadChangedError and nothing is written (None: write
        unconditionally)."""

    def get_thread(self, thread_id: str) -> Thread:
        """The stored thread; NotFoundError when unknown."""

    def list_threads(self, limit: int = 100, offset: int = 0) -> list[ThreadInfo]: ...

    def post_hashes(self, thread_id: str) -> dict[str, str]:
        """post id -> content hash of the sentences stored for it."""

    def thread_sentences(self, thread_id: str) -> tuple[list[SentenceRecord], np.ndarray]:
        """All sentences of a thread in (post number, sentence index) order, with their vectors."""

    def search(self, vector: np.ndarray, k: int = 10, thread_id: str | None = None) -> list[SearchHit]:
        """Nearest sentences by cosine similarity, optionally within one thread."""

    def count(self) -> int:
        """Number of stored sentences."""

    def close(self) -> None: ...
