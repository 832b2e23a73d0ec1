"""The sentence-store interface shared by every backend (`sqlite_faiss`, `postgres_pgvector`).

A store keeps threads (for display) and their sentences with provenance and unit-normalised vectors (for
highlights and search). Ingest writes a thread with `replace_thread`: its row, its changed posts' sentences
and vectors and the removal of its dropped posts, together in one transaction, so a failure half-way (a
refused row, a killed process) leaves the thread as it was, never new text over old sentences.
`thread_state` tells which posts changed, so unchanged posts keep their sentences; the write carries the
state it was computed against (the post hashes and the stored thread row: title, source, url, tags, the
posts' metadata) and is refused (`ThreadChangedError`) when another writer changed any of it in between, so
two processes ingesting one thread at once never leave it mixed, nor overwrite each other unnoticed. A
reader that needs a thread's text with its sentences (the digest: highlights and citations are offsets into
that text) reads both in one read transaction (`thread_snapshot`), never as two calls a write can commit
between. One shared test suite runs against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tldrlab.data.threads import Post, Thread
from tldrlab.errors import ConflictError


class ThreadChangedError(ConflictError):
    """`replace_thread` was computed against a thread state (post hashes, thread row) that another writer
    has changed since: nothing was written; re-read the state, recompute the changed posts and write again."""

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


def post_provenance(thread: Thread, post: Post) -> tuple[int, str | None, str | None]:
    """What each `SentenceRecord` of a post repeats of it: its number, its author and its link (the thread's
    when the post has none of its own)."""
    return post.number, post.author, post.url or thread.url


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
class ThreadState:
    """What a write of a thread is computed against (`thread_state`), handed back to `replace_thread` as
    `expected`: the write goes through only while the store still holds exactly this."""

    post_hashes: dict[str, str]
    """post id -> content hash of the sentences stored for it."""
    row: str | None
    """Fingerprint of the stored thread row (everything `replace_thread` writes besides sentences: title,
    source, url, tags, the posts and their metadata); None when the thread is not stored."""


@dataclass(frozen=True)
class ThreadSnapshot:
    """A stored thread with its sentences and their vectors, all read from one committed state of the store
    (`thread_snapshot`): the sentences' post ids, post numbers and offsets are those `replace_thread` wrote
    together with this `thread`, so they point into its posts' text."""

    thread: Thread
    sentences: list[SentenceRecord]
    """In (post number, sentence index) order, as `thread_sentences` gives them."""
    vectors: np.ndarray
    """float32, shape (len(sentences), dim), row i the vector of sentences[i]."""


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
        expected: ThreadState | None = None,
    ) -> None:
        """Store or replace the thread's row, replace the sentences of `posts` and delete those of
        `removed_posts`, all in one transaction: everything is written or nothing is. The sentences kept
        (other posts') take their post's number, author and link from `thread`. Vectors and sentences
        are checked before the transaction opens. `expected` (what `thread_state` returned when the write
        was computed) is compared inside the transaction, with the thread locked against other writers; if
        the stored post hashes or thread row differ, ThreadChangedError and nothing is written (None: write
        unconditionally)."""

    def delete_thread(self, thread_id: str) -> int:
        """Delete the thread, its sentences and their vectors in one transaction (searches no longer find
        them); returns how many sentences went. NotFoundError when unknown."""

    def get_thread(self, thread_id: str) -> Thread:
        """The stored thread; NotFoundError when unknown."""

    def list_threads(self, limit: int = 100, offset: int = 0, q: str | None = None) -> list[ThreadInfo]:
        """The newest threads first, a page of them; `q` keeps those whose id or title holds it (ignoring
        case)."""

    def post_hashes(self, thread_id: str) -> dict[str, str]:
        """post id -> content hash of the sentences stored for it."""

    def thread_state(self, thread_id: str) -> ThreadState:
        """The thread as stored now, to compute a write against (`replace_thread(..., expected=...)`)."""

    def thread_sentences(self, thread_id: str) -> tuple[list[SentenceRecord], np.ndarray]:
        """All sentences of a thread in (post number, sentence index) order, with their vectors. A
        `get_thread` before or after it may read another version of the thread (a `replace_thread` can
        commit in between): whoever needs the thread's text with its sentences reads `thread_snapshot`."""

    def thread_snapshot(self, thread_id: str) -> ThreadSnapshot:
        """The stored thread, its sentences and their vectors (as `get_thread` and `thread_sentences` give
        them) read in one read-only transaction, so all three come from one committed state of the store:
        a `replace_thread` or `delete_thread` committing meanwhile is wholly in it or wholly absent, never
        new sentences (their offsets, post numbers) with the old text or the reverse. Citations and
        highlights taken from it therefore point into `snapshot.thread` as returned. It neither waits for
        nor blocks writers. NotFoundError when unknown."""

    def search(self, vector: np.ndarray, k: int = 10, thread_id: str | None = None) -> list[SearchHit]:
        """Nearest sentences by cosine similarity, optionally within one thread."""

    def count(self) -> int:
        """Number of stored sentences."""

    def close(self) -> None: ...
