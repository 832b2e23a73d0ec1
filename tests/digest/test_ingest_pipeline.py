"""The ingest pipeline (split -> embed -> write threads): order, completeness, errors, progress."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.data.readers import read_threads
from tldrlab.data.threads import Thread
from tldrlab.digest.ingest import IngestStats, ingest_threads
from tldrlab.embed.base import Embedder
from tldrlab.errors import DimensionMismatchError, InvalidInputError, RunCancelledError
from tldrlab.store import open_store
from tldrlab.store.base import SentenceStore


@pytest.fixture(scope="module")
def beer_threads(shared_data: Path) -> list[Thread]:
    # the dump's first 8 threads, read as load_threads reads them without parsing the other 655
    return read_threads(shared_data / "stackexchange_beer" / "Posts.xml", limit=8)


def no_ingest_threads_left() -> bool:
    return not any(t.name.startswith("tldrlab-ingest-") for t in threading.enumerate())


def test_every_sentence_is_written_and_threads_complete_in_order(
    beer_threads: list[Thread], store: SentenceStore, embedder: Embedder
) -> None:
    seen: list[str] = []
    written: list[int] = []
    stats = ingest_threads(
        beer_threads,
        store,
        embedder,
        batch_size=4,  # many small batches: the stages really interleave
        on_thread=lambda thread, s: seen.append(thread.id),
        on_written=lambda s: written.append(s.written_sentences),
    )
    assert seen == [t.id for t in beer_threads] == stats.thread_ids
    assert stats.threads == len(beer_threads) and stats.written_sentences == stats.sentences > 40
    assert written == sorted(written) and written[-1] == stats.sentences
    assert sum(len(store.thread_sentences(t.id)[0]) for t in beer_threads) == stats.sentences
    assert stats.embed_seconds > 0 and stats.split_seconds > 0 and stats.write_seconds > 0
    assert no_ingest_threads_left()

    again = ingest_threads(beer_threads, store, embedder, batch_size=4)  # nothing changed: nothing embedded
    assert (again.threads, again.sentences, again.skipped_unchanged) == (8, 0, again.posts)


def test_a_failing_writer_stops_the_pipeline_with_its_error(
    beer_threads: list[Thread], embedder: Embedder, tmp_path: Path
) -> None:
    wrong = open_store(url=f"sqlite:///{tmp_path}/eight.db", dim=8)  # vectors of 384 do not fit
    try:
        with pytest.raises(DimensionMismatchError):
            ingest_threads(beer_threads, wrong, embedder, batch_size=4)
    finally:
        wrong.close()
    assert no_ingest_threads_left()


def test_cancelling_from_the_progress_callback_stops_everything(
    beer_threads: list[Thread], store: SentenceStore, embedder: Embedder
) -> None:
    def cancel_after_two(thread: Thread, stats: IngestStats) -> None:
        if stats.threads == 2:
            raise RunCancelledError("run cancelled on request")

    with pytest.raises(RunCancelledError):
        ingest_threads(beer_threads, store, embedder, batch_size=4, on_thread=cancel_after_two)
    assert no_ingest_threads_left()
    # each thread is written whole (row, posts, sentences) or not at all
    stored = {info.id for info in store.list_threads(limit=len(beer_threads))}
    assert 2 <= len(stored) < len(beer_threads)
    for thread in beer_threads:
        if thread.id in stored:
            assert store.get_thread(thread.id) == thread
            assert store.post_hashes(thread.id) == {p.id: p.content_hash() for p in thread.posts}


def test_ingest_progress_counts_threads_and_sentences_with_their_own_rates(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = shared_data / "stackexchange_beer" / "Posts.xml"
    head = source.read_text(encoding="utf-8-sig").splitlines()[:40]
    dump = tmp_path / "Posts.xml"
    dump.write_text("\n".join([*head, "</posts>"]), encoding="utf-8")
    code, out, err = run_captured(["ingest", str(dump)], capsys)
    assert code == 0, err
    shown = out + err
    assert "threads" in shown and "threads/s" in shown
    assert "sentences" in shown and "sentences/s" in shown


@pytest.mark.slow
def test_sentences_are_pooled_across_posts_into_large_embedder_calls(
    beer_threads: list[Thread], store: SentenceStore, embedder: Embedder
) -> None:
    """The embedder sorts each call's sentences by length, so small calls pad much more: pools of 4 batches
    ran ingest at 0.60 of the raw embedder; the pipeline now pools POOL_BATCHES batches after the first."""
    from tldrlab.digest.ingest import POOL_BATCHES

    calls: list[int] = []

    class Recording:  # the real embedder, with its call sizes written down
        name, dim = embedder.name, embedder.dim

        def encode(self, texts: list[str], batch_size: int = 64) -> object:
            calls.append(len(texts))
            return embedder.encode(texts, batch_size=batch_size)

    # 8 threads, ~200 sentences: with batch_size=1 the first call and six full pools of POOL_BATCHES (32)
    stats = ingest_threads(beer_threads, store, Recording(), batch_size=1)  # type: ignore[arg-type]
    assert sum(calls) == stats.sentences and len(calls) >= 5
    assert calls[0] >= 1 and all(size >= POOL_BATCHES for size in calls[1:-1])  # the last takes what is left
    assert POOL_BATCHES * 64 >= 2000  # at the default batch size, pools of ~2,000 sentences (0.91 of raw)


def test_a_thread_given_twice_in_one_ingest_is_refused(store: SentenceStore, embedder: Embedder) -> None:
    # the second copy was compared with the store before the first was written: the thread ended as the
    # second copy with the first copy's sentences still stored, highlights citing a post it does not have
    first = Thread.model_validate({"id": "d", "posts": [{"id": "1", "number": 1, "text": "First one. Two."}]})
    second = Thread.model_validate({"id": "d", "posts": [{"id": "2", "number": 1, "text": "Second. Three."}]})
    with pytest.raises(InvalidInputError, match="thread 'd' appears twice"):
        ingest_threads([first, second], store, embedder)
    ingest_threads([second], store, embedder)  # one version of it: the store holds exactly that
    records, _ = store.thread_sentences("d")
    assert [(r.post_id, r.text) for r in records] == [("2", "Second."), ("2", "Three.")]
