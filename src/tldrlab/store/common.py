"""Checks and conversions both stores share: vector validation, store identity (dimension, embedder)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tldrlab.data.threads import Thread
from tldrlab.embed import vector_space
from tldrlab.errors import ConflictError, DimensionMismatchError, InvalidInputError
from tldrlab.store.base import PostSentences, SentenceRecord
from tldrlab.store.tables import check_thread_id


def check_vectors(vectors: np.ndarray, rows: int, dim: int) -> np.ndarray:
    """Vectors as contiguous unit-norm float32 of shape (rows, dim), or a clear error naming what is wrong."""
    array = np.asarray(vectors)
    if array.ndim == 1 and rows == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise InvalidInputError(f"vectors must be a 2-D array (sentences x {dim}), got shape {array.shape}")
    if array.shape[1] != dim:
        raise DimensionMismatchError(
            f"vectors have dimension {array.shape[1]} but this store holds {dim}-d vectors "
            f"(was it created with another embedder?)"
        )
    if array.shape[0] != rows:
        raise InvalidInputError(f"got {array.shape[0]} vectors for {rows} sentences")
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise InvalidInputError("vectors contain NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


def check_query(vector: np.ndarray, dim: int) -> np.ndarray:
    """A single query vector as a unit-norm float32 row of shape (1, dim)."""
    array = np.asarray(vector)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise InvalidInputError(f"a query is one vector of dimension {dim}, got shape {array.shape}")
    return check_vectors(array, 1, dim)


def check_k(k: int) -> int:
    if not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    return k


def check_sentences(thread_id: str, post_id: str, sentences: Sequence[SentenceRecord]) -> None:
    for sentence in sentences:
        if sentence.thread_id != thread_id or sentence.post_id != post_id:
            raise InvalidInputError(
                f"sentence {sentence.sentence_index} belongs to thread {sentence.thread_id!r} post "
                f"{sentence.post_id!r}, not to thread {thread_id!r} post {post_id!r}"
            )


def check_thread_write(
    thread: Thread, posts: Sequence[PostSentences], removed_posts: Sequence[str], dim: int
) -> list[PostSentences]:
    """Everything `replace_thread` can check before its transaction opens, so that a bad write is refused
    before it takes the write lock: the posts' vectors (returned unit-normalised), that each sentence belongs
    to its post, that each post is written once and that no removed post is also written."""
    check_thread_id(thread.id)
    checked: list[PostSentences] = []
    seen: set[str] = set()
    for post in posts:
        if post.post_id in seen:
            raise InvalidInputError(f"post {post.post_id!r} of thread {thread.id!r} is written twice")
        seen.add(post.post_id)
        check_sentences(thread.id, post.post_id, post.sentences)
        vectors = check_vectors(post.vectors, len(post.sentences), dim)
        checked.append(PostSentences(post.post_id, post.content_hash, list(post.sentences), vectors))
    both = seen.intersection(removed_posts)
    if both:
        raise InvalidInputError(f"posts {sorted(both)} of thread {thread.id!r} are both written and removed")
    return checked


def check_identity(where: str, stored: dict[str, str], dim: int, embedder: str | None) -> dict[str, str]:
    """Compare a store's recorded dimension/embedder with what the caller wants; returns keys to record.

    A store holds vectors of one dimension from one vector space: opening it with another dimension, or with
    an embedder from another space, would silently mix incomparable vectors, so it is refused.
    """

    to_record: dict[str, str] = {}
    if "dim" in stored and int(stored["dim"]) != dim:
        raise DimensionMismatchError(
            f"the sentence store at {where} holds {stored['dim']}-d vectors but {dim}-d were requested: "
            f"use the embedder it was created with ({stored.get('embedder', 'unknown')}) or another store"
        )
    if "dim" not in stored:
        to_record["dim"] = str(dim)
    if embedder is not None:
        known = stored.get("embedder")
        if known is None:
            to_record["embedder"] = embedder
        elif vector_space(known) != vector_space(embedder):
            raise ConflictError(
                f"the sentence store at {where} was filled by embedder {known!r}; its vectors cannot be "
                f"compared with {embedder!r}'s: re-create the store or use {known!r}"
            )
    return to_record
