"""Ingest: threads -> sentences with exact offsets -> vectors (in batches) -> the store, with provenance.

Re-ingesting a thread re-embeds only the posts whose content hash changed; posts that disappeared lose their
sentences. The work is a three-stage pipeline, so that the embedder (the costly stage) never waits:

    splitter thread:  compare post hashes with the store, split the changed posts into sentences
        -> queue ->
    caller's thread:  pool sentences across posts and threads into full batches, embed them
        -> queue ->
    writer thread:    once a thread's posts are all embedded, write the thread in one transaction (its row,
                      its changed posts' sentences and vectors, the removal of its dropped posts)

Everything that can fail before the write (splitting, embedding, checking the vectors) is done before the
write transaction opens, and the transaction holds the write lock only for the writes: a thread is replaced
whole or, on any failure, left exactly as it was (never its new text over its old sentences).
The write carries the thread state it was computed against (post hashes and thread row); if another process
wrote the thread in between (two ingests of one thread at once, even one changing only the title), the store
refuses it and the thread is recomputed against the new state
(re-splitting and re-embedding only the posts that differ from what is stored now, reusing the vectors already
made) and written again, up to `WRITE_TRIES` times.
ONNX Runtime and torch release the GIL while they compute, so splitting and writing run during embedding.
The stages keep the input order, so `on_thread` sees the threads in order. An error in any stage stops the
others and is raised here; the threads written before it stay written.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.config import Settings, get_settings
from tldrlab.data.sentences import split_sentences
from tldrlab.data.threads import Post, Thread
from tldrlab.digest.cache import SummaryCache
from tldrlab.digest.config import (
    HighlightRerankerTrainConfig,
    HighlightScorerTrainConfig,
    ThreadIngestConfig,
    check_ingest,
)
from tldrlab.embed import check_embedder_name, get_embedder
from tldrlab.embed.base import Embedder
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.logs import progress_bars_shown
from tldrlab.report import Report
from tldrlab.runs import start_run
from tldrlab.store import open_store
from tldrlab.store.base import (
    PostSentences,
    SentenceRecord,
    SentenceStore,
    ThreadChangedError,
    ThreadState,
    post_provenance,
)


@dataclass
class IngestStats:
    """What an ingest did; logged as run metrics."""

    threads: int = 0
    """Threads written (each in one transaction: its row, its changed posts, its removed posts)."""
    posts: int = 0
    """Posts seen (changed or not)."""
    sentences: int = 0
    """Sentences of the changed posts (the ones embedded)."""
    written_sentences: int = 0
    """Sentences written to the store so far (what the progress rate counts)."""
    embedded: int = 0
    """Posts (re-)embedded because they are new or their text changed."""
    skipped_unchanged: int = 0
    """Posts whose content hash matched the store: not re-embedded."""
    removed_posts: int = 0
    rewrites: int = 0
    """Thread writes refused because another writer changed the thread in between, and recomputed."""
    seconds: float = 0.0
    """Wall time of the whole pipeline."""
    split_seconds: float = 0.0
    """Time the splitter thread spent on sentence segmentation."""
    embed_seconds: float = 0.0
    """Time spent in the embedder."""
    write_seconds: float = 0.0
    """Time the writer thread spent writing to the store."""
    thread_ids: list[str] = field(default_factory=list)

    @property
    def sentences_per_s(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else 0.0

    def metrics(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "thread_ids"}
        for key in ("seconds", "split_seconds", "embed_seconds", "write_seconds"):
            out[key] = round(out[key], 3)
        out["sentences_per_s"] = round(self.sentences_per_s, 2)
        return out


POOL_BATCHES = 32
"""Sentences pooled per embedder call, in embedder batches (after the first call, which starts the pipeline
with one batch). The embedder sorts a call's sentences by length, so a bigger pool pads less: on 4,000 beer
sentences, one thread, minilm-onnx, ingest ran at 0.60 of the raw embedder (one call for all) in pools of 256,
0.85 in pools of 1,024 and 0.91 in pools of 2,048 (bench/digest_speed.py). Progress and writes then come
every 2,048 sentences (seconds apart); a pool costs a few MB."""

WRITE_TRIES = 3
"""Writes of one thread before giving up when another writer keeps changing it in between."""


def post_sentence_records(thread: Thread, post: Post) -> list[SentenceRecord]:
    """A post's sentences with their provenance; `text == post.text[start:end]`."""
    number, author, url = post_provenance(thread, post)
    return [
        SentenceRecord(
            thread_id=thread.id,
            post_id=post.id,
            post_number=number,
            sentence_index=s.index,
            start=s.start,
            end=s.end,
            text=s.text,
            author=author,
            url=url,
        )
        for s in split_sentences(post.text)
    ]


@dataclass
class _Pending:
    """A changed post, split, waiting for its vectors."""

    thread_id: str
    post_id: str
    content_hash: str
    records: list[SentenceRecord]


@dataclass
class _ThreadDone:
    """All of a thread's changed posts were queued before this: the writer then writes the thread whole."""

    thread: Thread
    removed: list[str]
    stored: ThreadState
    """The stored state the thread's changed posts were found against (the write's expected state)."""


_END = object()
"""Sent down each queue after the last item."""


class _Stopped(Exception):
    """Another stage failed: this one stops without an error of its own."""


class _Pipeline:
    """The queues, the shared stop flag and the first error of any stage."""

    def __init__(self, stats: IngestStats) -> None:
        self.stats = stats
        self.stats_lock = threading.Lock()
        # bounded, so the splitter stays ahead of the embedder without holding a whole dump in memory
        self.to_embed: queue.Queue[Any] = queue.Queue(maxsize=2048)
        self.to_write: queue.Queue[Any] = queue.Queue(maxsize=4)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        # the embedder is called from the caller's thread and, to recompute a thread, from the writer thread;
        # tokenizers are not safe to call from two threads at once
        self.embed_lock = threading.Lock()

    def put(self, target: queue.Queue[Any], item: Any) -> None:
        while not self.stop.is_set():
            try:
                target.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def get(self, source: queue.Queue[Any]) -> Any:
        while not self.stop.is_set():
            try:
                return source.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def stage(self, name: str, work: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except _Stopped:
                pass
            except BaseException as exc:  # raised again in the caller's thread
                self.errors.append(exc)
                self.stop.set()

        thread = threading.Thread(target=run, name=f"tldrlab-ingest-{name}", daemon=True)
        thread.start()
        return thread


def ingest_threads(
    threads: Iterable[Thread],
    store: SentenceStore,
    embedder: Embedder,
    *,
    batch_size: int = 64,
    on_thread: Callable[[Thread, IngestStats], None] | None = None,
    on_written: Callable[[IngestStats], None] | None = None,
) -> IngestStats:
    """Store each thread and (re-)embed the sentences of its new or changed posts (see the module docstring).

    `on_thread` is called (in the writer thread, in input order) once a thread is completely written:
    progress bars, heartbeats, cancellation checks; an exception it raises stops the ingest. `on_written`
    is called after each batch is written.
    """
    stats = IngestStats()
    started = time.perf_counter()
    pipe = _Pipeline(stats)

    def split() -> None:
        seen: set[str] = set()
        for thread in threads:
            if pipe.stop.is_set():
                raise _Stopped
            if thread.id in seen:
                # its posts would be compared with the store before the first copy is written: the thread
                # would end as this copy with the other copy's sentences still stored
                raise InvalidInputError(
                    f"thread {thread.id!r} appears twice in the input: give one version of each thread"
                )
            seen.add(thread.id)
            state = store.thread_state(thread.id)
            stored = state.post_hashes
            for post in thread.posts:
                content_hash = post.content_hash()
                if stored.get(post.id) == content_hash:
                    with pipe.stats_lock:
                        stats.posts += 1
                        stats.skipped_unchanged += 1
                    continue
                begun = time.perf_counter()
                records = post_sentence_records(thread, post)
                with pipe.stats_lock:
                    stats.posts += 1
                    stats.embedded += 1
                    stats.sentences += len(records)
                    stats.split_seconds += time.perf_counter() - begun
                pipe.put(pipe.to_embed, _Pending(thread.id, post.id, content_hash, records))
            current = {p.id for p in thread.posts}
            pipe.put(pipe.to_embed, _ThreadDone(thread, sorted(set(stored) - current), state))
        pipe.put(pipe.to_embed, _END)

    def write() -> None:
        # the current thread's changed posts with their vectors, written with the thread when it is done
        posts: list[PostSentences] = []
        while True:
            batch = pipe.get(pipe.to_write)
            if batch is _END:
                return
            items, vectors = batch
            offset = 0
            for item in items:
                if isinstance(item, _Pending):
                    n = len(item.records)
                    posts.append(
                        PostSentences(
                            item.post_id,
                            item.content_hash,
                            item.records,
                            np.ascontiguousarray(vectors[offset : offset + n], dtype=np.float32),
                        )
                    )
                    offset += n
                    continue
                begun = time.perf_counter()
                posts, removed = write_thread(item, posts)
                with pipe.stats_lock:
                    stats.written_sentences += sum(len(p.sentences) for p in posts)
                    stats.removed_posts += len(removed)
                    stats.threads += 1
                    stats.thread_ids.append(item.thread.id)
                    stats.write_seconds += time.perf_counter() - begun
                posts = []
                if on_thread is not None:
                    on_thread(item.thread, stats)
            if on_written is not None:
                on_written(stats)

    def encode(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, embedder.dim), np.float32)
        begun = time.perf_counter()
        with pipe.embed_lock:
            vectors = embedder.encode(texts, batch_size=batch_size)
        with pipe.stats_lock:
            stats.embed_seconds += time.perf_counter() - begun
        return vectors

    def write_thread(done: _ThreadDone, posts: list[PostSentences]) -> tuple[list[PostSentences], list[str]]:
        """Write the thread against the state it was computed with; when another writer changed it in
        between, recompute it against the state stored now and try again. Returns what was written."""
        stored, removed = done.stored, done.removed
        for attempt in range(1, WRITE_TRIES + 1):
            try:
                store.replace_thread(done.thread, posts, removed, expected=stored)
                return posts, removed
            except ThreadChangedError as exc:
                if attempt == WRITE_TRIES:
                    raise ThreadChangedError(
                        f"thread {done.thread.id!r} was changed by another writer during each of "
                        f"{WRITE_TRIES} tries to write it (is it ingested elsewhere at the same time?); "
                        "it is stored as the other writer left it: ingest it again"
                    ) from exc
            stored = store.thread_state(done.thread.id)
            posts, removed = recompute(done.thread, posts, stored.post_hashes)
            with pipe.stats_lock:
                stats.rewrites += 1
        raise AssertionError("unreachable")  # the loop returns or raises

    def recompute(
        thread: Thread, ready: list[PostSentences], stored: dict[str, str]
    ) -> tuple[list[PostSentences], list[str]]:
        """The thread's write against `stored`: posts whose text is stored already are left alone, posts
        split and embedded before are reused, the rest are split and embedded now."""
        made = {p.post_id: p for p in ready}
        todo: list[tuple[Post, str, list[SentenceRecord]]] = []
        for post in thread.posts:
            content_hash = post.content_hash()
            if stored.get(post.id) != content_hash and post.id not in made:
                todo.append((post, content_hash, post_sentence_records(thread, post)))
        vectors = encode([r.text for _, _, records in todo for r in records])
        offset = 0
        for post, content_hash, records in todo:
            n = len(records)
            made[post.id] = PostSentences(
                post.id, content_hash, records, np.ascontiguousarray(vectors[offset : offset + n], np.float32)
            )
            offset += n
        with pipe.stats_lock:
            stats.embedded += len(todo)
            stats.sentences += sum(len(records) for _, _, records in todo)
        posts = [made[p.id] for p in thread.posts if stored.get(p.id) != p.content_hash()]
        current = {p.id for p in thread.posts}
        return posts, sorted(set(stored) - current)

    def embed(items: list[Any]) -> None:
        texts = [r.text for item in items if isinstance(item, _Pending) for r in item.records]
        pipe.put(pipe.to_write, (items, encode(texts)))

    stages = [pipe.stage("split", split), pipe.stage("write", write)]
    try:
        pending: list[Any] = []
        pending_sentences = 0
        embedded_once = False
        while True:
            item = pipe.get(pipe.to_embed)
            if item is _END:
                break
            pending.append(item)
            if isinstance(item, _Pending):
                pending_sentences += len(item.records)
            # full batches for the embedder (the first one as soon as there is one batch, so it starts early);
            # a thread with nothing to embed is reported at once
            nothing_to_embed = pending_sentences == 0 and isinstance(item, _ThreadDone)
            if pending_sentences >= batch_size * (POOL_BATCHES if embedded_once else 1) or nothing_to_embed:
                embedded_once = embedded_once or pending_sentences > 0
                embed(pending)
                pending, pending_sentences = [], 0
        if pending:
            embed(pending)
        pipe.put(pipe.to_write, _END)
        for stage in stages:
            stage.join()
    except _Stopped:
        pass
    except BaseException:
        pipe.stop.set()
        raise
    finally:
        if pipe.stop.is_set():
            for stage in stages:
                stage.join(timeout=30)
    if pipe.errors:
        raise pipe.errors[0]
    stats.seconds = time.perf_counter() - started
    return stats


def ingest_thread(
    thread: Thread, store: SentenceStore, embedder: Embedder, batch_size: int = 64
) -> IngestStats:
    return ingest_threads([thread], store, embedder, batch_size=batch_size)


def load_threads(path: Path | str, format: str | None = None, *, skip_invalid: bool = False) -> list[Thread]:
    """Threads from a file or directory in any supported thread format (detected unless given)."""

    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no such file or directory: {path}")
    # lazy: loads bs4, lxml (this module stays light without them)
    from tldrlab.data.readers import read_threads

    return list(read_threads(path, format, skip_invalid=skip_invalid))


def ingest_job(run: Any, config: ThreadIngestConfig) -> dict[str, Any]:
    """Run kind `ingest`: read, split, embed and store the threads; the stats are the run's summary."""

    run.set_phase("reading threads", progress=0.0)
    begun = time.perf_counter()
    threads = load_threads(config.path, config.format, skip_invalid=config.skip_invalid)
    read_seconds = round(time.perf_counter() - begun, 3)
    run.log("read threads", threads=len(threads), seconds=read_seconds)
    run.set_phase("loading the embedder")
    store, embedder = open_sentence_store(embedder=config.embedder)
    run.set_environment(embedder=embedder.name, store=type(store).__name__)
    run.set_phase("embedding")
    try:
        stats = _ingest_with_progress(threads, store, embedder, config.batch_size, run, config.progress)
    finally:
        store.close()
    run.set_summary(read_seconds=read_seconds, **stats.metrics())
    return {**stats.metrics(), "read_seconds": read_seconds, "thread_ids": stats.thread_ids}


def delete_thread(thread_id: str, store: SentenceStore, cache: SummaryCache) -> int:
    """Delete a stored thread: its row, sentences and vectors (one store transaction), then its cached
    digests, which quote its sentences and would outlive it otherwise. Returns how many sentences went;
    NotFoundError when the store has no such thread (nothing is deleted then)."""
    removed = store.delete_thread(thread_id)
    cache.drop_thread(thread_id)
    return removed


def open_sentence_store(
    settings: Settings | None = None, *, embedder: str | None = None
) -> tuple[SentenceStore, Embedder]:
    """The sentence store of the settings, opened for the vectors of `embedder` (default: the settings'
    embedder), and that embedder (loaded)."""
    settings = settings or get_settings()
    loaded = get_embedder(embedder or settings.embedder)
    return open_store(settings, dim=loaded.dim, embedder=loaded.name), loaded


def check_ingest_inputs(config: ThreadIngestConfig) -> None:
    """Kind `ingest`'s check before a run is created: an embedder name that can be built (`ingest --embedder
    nosuch` was refused by the run's first embedding, and the failed run stayed behind), and a path that holds
    forum threads (`check_ingest`)."""
    check_embedder_name(config.embedder)
    check_ingest(config)


def check_highlight_training(config: HighlightScorerTrainConfig | HighlightRerankerTrainConfig) -> None:
    """The check of kinds `highlight_scorer_train` and `highlight_reranker_train` before a run is created
    (command line and API alike): the embedder is one that can be built. `train-highlight-scorer --embedder
    nosuch` was refused by the run's first embedding, which stayed behind failed."""
    check_embedder_name(config.embedder)


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
    check_ingest_inputs(config)  # `digest FILE` of a binary file or of records left a failed ingest run
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
    """`ingest_threads` with two progress lines: threads (of the total, threads/s, ETA) and sentences
    (written so far, sentences/s), both rates from the start of the pipeline."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        # the process's switch too (`--quiet`, a service's log): not every caller's config says it
        disable=not (show_progress and progress_bars_shown()),
        transient=False,
        # on stderr, as every other progress and message: stdout carries results (`ingest ... > out.txt`)
        console=Console(stderr=True),
    )
    started = time.perf_counter()
    total = len(threads)
    with progress:
        thread_task = progress.add_task("threads", total=total, rate="", eta="")
        sentence_task = progress.add_task("sentences", total=None, rate="", eta="")

        def on_written(stats: IngestStats) -> None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(
                sentence_task,
                completed=stats.written_sentences,
                rate=f"{stats.written_sentences / elapsed:,.1f} sentences/s",
            )

        def on_thread(thread: Thread, stats: IngestStats) -> None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            per_s = stats.threads / elapsed
            left = (total - stats.threads) / per_s if per_s > 0 else 0.0
            progress.update(
                thread_task,
                completed=stats.threads,
                rate=f"{per_s:,.2f} threads/s",
                eta=f"eta {time.strftime('%H:%M:%S', time.gmtime(left))}",
            )
            if stats.threads % 25 == 0 or stats.threads == total:
                run.log_metrics(stats.threads, **stats.metrics())
                run.heartbeat(progress=stats.threads / max(total, 1))
                run.check_cancelled()

        stats = ingest_threads(
            threads, store, embedder, batch_size=batch_size, on_thread=on_thread, on_written=on_written
        )
        if stats.embedded == 0:
            # Every post was already stored unchanged: "0/? 0.0 sentences/s" read like a stalled step, so
            # the line says what the summary says (the unchanged posts were not embedded again).
            progress.update(
                sentence_task,
                total=0,
                completed=0,
                rate=f"nothing to embed ({stats.skipped_unchanged} posts unchanged)",
            )
        else:
            on_written(stats)
            progress.update(sentence_task, total=stats.written_sentences)  # the count is known now: N/N
        return stats


def ingest_report(run_id: str, stats: dict[str, Any]) -> Report:
    return Report(
        [
            f"ingested {stats['threads']} thread(s), {stats['posts']} posts: {stats['embedded']} embedded "
            f"({stats['sentences']} sentences, {stats['sentences_per_s']:.0f}/s), "
            f"{stats['skipped_unchanged']} unchanged, {stats['removed_posts']} removed  run {run_id}"
        ]
    )


def thread_to_digest(
    target: str, thread_id: str | None = None, *, format: str | None = None, show_progress: bool = True
) -> str:
    """The stored thread a digest of `target` is about: a thread file or directory is ingested first (its
    first thread unless `thread_id` names one of it), anything else is a stored thread id."""
    if not Path(target).exists():
        return thread_id or target
    if thread_id is not None and thread_id not in {t.id for t in load_threads(target, format)}:
        # before the ingest: a file without the thread asked for is not stored (nor a run made) for nothing
        raise InvalidInputError(f"thread {thread_id!r} is not in {target}")
    stats, _ = ingest_path(target, format=format, show_progress=show_progress)
    if not stats.thread_ids:
        raise InvalidInputError(f"no threads in {target}")
    if thread_id is not None and thread_id not in stats.thread_ids:
        raise InvalidInputError(f"thread {thread_id!r} is not in {target}")
    return thread_id or stats.thread_ids[0]
