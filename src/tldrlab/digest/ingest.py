"""Ingest: threads -> sentences with exact offsets -> vectors (in batches) -> the store, with provenance.

Re-ingesting a thread re-embeds only the posts whose content hash changed; posts that disappeared lose their
sentences. Sentences of changed posts are pooled across posts and threads so the embedder always sees full
batches: that is what keeps end-to-end ingest close to the raw embedder's throughput.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.data.sentences import split_sentences
from tldrlab.data.threads import Post, Thread
from tldrlab.digest.config import ThreadIngestConfig
from tldrlab.embed.base import Embedder
from tldrlab.store.base import SentenceRecord, SentenceStore


@dataclass
class IngestStats:
    """What an ingest did; logged as run metrics."""

    threads: int = 0
    posts: int = 0
    """Posts seen (changed or not)."""
    sentences: int = 0
    """Sentences of the changed posts (the ones embedded)."""
    embedded: int = 0
    """Posts (re-)embedded because they are new or their text changed."""
    skipped_unchanged: int = 0
    """Posts whose content hash matched the store: not re-embedded."""
    removed_posts: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    thread_ids: list[str] = field(default_factory=list)

    @property
    def sentences_per_s(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else 0.0

    def metrics(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "thread_ids"}
        out["sentences_per_s"] = round(self.sentences_per_s, 2)
        return out


def post_sentence_records(thread: Thread, post: Post) -> list[SentenceRecord]:
    """A post's sentences with their provenance; `text == post.text[start:end]`."""
    return [
        SentenceRecord(
            thread_id=thread.id,
            post_id=post.id,
            post_number=post.number,
            sentence_index=s.index,
            start=s.start,
            end=s.end,
            text=s.text,
            author=post.author,
            url=post.url or thread.url,
        )
        for s in split_sentences(post.text)
    ]


@dataclass
class _Pending:
    thread_id: str
    post_id: str
    content_hash: str
    records: list[SentenceRecord]


class _BatchWriter:
    """Pools changed posts until a batch of sentences is ready, embeds them at once, writes post by post."""

    def __init__(self, store: SentenceStore, embedder: Embedder, batch_size: int, stats: IngestStats) -> None:
        self.store, self.embedder, self.batch_size, self.stats = store, embedder, batch_size, stats
        self.pending: list[_Pending] = []
        self.pending_sentences = 0

    def add(self, item: _Pending) -> None:
        self.pending.append(item)
        self.pending_sentences += len(item.records)
        if self.pending_sentences >= self.batch_size * 4:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        texts = [r.text for item in self.pending for r in item.records]
        started = time.perf_counter()
        vectors = (
            self.embedder.encode(texts, batch_size=self.batch_size)
            if texts
            else np.zeros((0, self.embedder.dim), np.float32)
        )
        self.stats.embed_seconds += time.perf_counter() - started
        offset = 0
        for item in self.pending:
            n = len(item.records)
            self.store.replace_post_sentences(
                item.thread_id,
                item.post_id,
                item.content_hash,
                item.records,
                np.ascontiguousarray(vectors[offset : offset + n], dtype=np.float32),
            )
            offset += n
        self.pending, self.pending_sentences = [], 0


def ingest_threads(
    threads: Iterable[Thread],
    store: SentenceStore,
    embedder: Embedder,
    *,
    batch_size: int = 64,
    on_thread: Callable[[Thread, IngestStats], None] | None = None,
) -> IngestStats:
    """Store each thread and (re-)embed the sentences of its new or changed posts.

    `on_thread` is called after each thread is queued (progress bars, heartbeats, cancellation checks).
    """
    stats = IngestStats()
    started = time.perf_counter()
    writer = _BatchWriter(store, embedder, batch_size, stats)
    for thread in threads:
        store.put_thread(thread)
        stored = store.post_hashes(thread.id)
        current = {p.id for p in thread.posts}
        for post in thread.posts:
            stats.posts += 1
            content_hash = post.content_hash()
            if stored.get(post.id) == content_hash:
                stats.skipped_unchanged += 1
                continue
            records = post_sentence_records(thread, post)
            stats.embedded += 1
            stats.sentences += len(records)
            writer.add(_Pending(thread.id, post.id, content_hash, records))
        removed = sorted(set(stored) - current)
        if removed:
            writer.flush()  # keep the store's view of this thread consistent before deleting
            store.delete_posts(thread.id, removed)
            stats.removed_posts += len(removed)
        stats.threads += 1
        stats.thread_ids.append(thread.id)
        if on_thread is not None:
            on_thread(thread, stats)
    writer.flush()
    stats.seconds = time.perf_counter() - started
    return stats


def ingest_thread(
    thread: Thread, store: SentenceStore, embedder: Embedder, batch_size: int = 64
) -> IngestStats:
    return ingest_threads([thread], store, embedder, batch_size=batch_size)


def load_threads(path: Path | str, format: str | None = None, *, skip_invalid: bool = False) -> list[Thread]:
    """Threads from a file or directory in any supported thread format (detected unless given)."""
    from tldrlab.errors import NotFoundError

    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no such file or directory: {path}")
    from tldrlab.data.readers import read_threads

    return list(read_threads(path, format, skip_invalid=skip_invalid))


def ingest_job(run: Any, config: ThreadIngestConfig) -> dict[str, Any]:
    """Run kind `ingest`: read, split, embed and store the threads; the stats are the run's summary."""
    from tldrlab.embed import get_embedder
    from tldrlab.store import open_store

    threads = load_threads(config.path, config.format, skip_invalid=config.skip_invalid)
    run.log("read threads", threads=len(threads))
    embedder = get_embedder(config.embedder)
    store = open_store(dim=embedder.dim, embedder=embedder.name)
    run.set_environment(embedder=embedder.name, store=type(store).__name__)
    try:
        stats = _ingest_with_progress(threads, store, embedder, config.batch_size, run, config.progress)
    finally:
        store.close()
    run.set_summary(**stats.metrics())
    return {**stats.metrics(), "thread_ids": stats.thread_ids}


def ingest_path(
    path: Path | str,
    *,
    format: str | None = None,
    embedder_name: str | None = None,
    batch_size: int = 64,
    skip_invalid: bool = False,
    show_progress: bool = True,
) -> tuple[IngestStats, str]:
    """Ingest a file or directory of threads as an `ingest` run; returns the stats and the run id."""
    from tldrlab.errors import NotFoundError
    from tldrlab.runs import start_run

    if not Path(path).exists():  # before a run is created for nothing
        raise NotFoundError(f"no such file or directory: {path}")
    config = ThreadIngestConfig(
        path=str(Path(path).resolve()),
        format=format,
        embedder=embedder_name,
        batch_size=batch_size,
        skip_invalid=skip_invalid,
        progress=show_progress,
    )
    with start_run("ingest", config) as run:
        result = ingest_job(run, config)
    fields = {k: v for k, v in result.items() if k in IngestStats.__dataclass_fields__}
    return IngestStats(**fields), run.id


def _ingest_with_progress(
    threads: list[Thread],
    store: SentenceStore,
    embedder: Embedder,
    batch_size: int,
    run: Any,
    show_progress: bool,
) -> IngestStats:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} sentences/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=False,
    )
    started = time.perf_counter()
    with progress:
        task = progress.add_task("threads", total=len(threads), rate=0.0)

        def on_thread(thread: Thread, stats: IngestStats) -> None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, rate=stats.sentences / elapsed)
            if stats.threads % 25 == 0 or stats.threads == len(threads):
                run.log_metrics(stats.threads, **stats.metrics())
                run.heartbeat(progress=stats.threads / max(len(threads), 1))
                run.check_cancelled()

        return ingest_threads(threads, store, embedder, batch_size=batch_size, on_thread=on_thread)
