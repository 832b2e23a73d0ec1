"""Ingest: exact provenance, re-ingestion of edited threads, removed posts, runs with metrics; both stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from digest_helpers import sample_thread

from tldrlab.data.readers import read_threads
from tldrlab.data.threads import Post
from tldrlab.digest.ingest import ingest_path, ingest_threads, load_threads
from tldrlab.embed.base import Embedder
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.store.base import SentenceStore


@pytest.fixture(params=["sqlite_faiss", "postgres_pgvector"])
def any_store(request: pytest.FixtureRequest, embedder: Embedder) -> Iterator[SentenceStore]:
    from tldrlab.store import open_store

    url = request.getfixturevalue("postgres_url") if request.param == "postgres_pgvector" else None
    opened = open_store(url=url, dim=embedder.dim, embedder=embedder.name)
    yield opened
    opened.close()


def test_sentences_keep_exact_provenance(any_store: SentenceStore, embedder: Embedder) -> None:
    thread = sample_thread()
    stats = ingest_threads([thread], any_store, embedder)
    assert (stats.threads, stats.posts, stats.embedded, stats.skipped_unchanged) == (1, 4, 4, 0)
    sentences, vectors = any_store.thread_sentences(thread.id)
    assert len(sentences) == stats.sentences == vectors.shape[0] >= 8
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    posts = {p.id: p for p in thread.posts}
    for s in sentences:
        post = posts[s.post_id]
        assert post.text[s.start : s.end] == s.text
        assert (s.post_number, s.author, s.url) == (post.number, post.author, post.url)
    # vectors are the embedder's vectors of exactly those sentences
    again = embedder.encode([s.text for s in sentences[:3]])
    assert np.allclose(again, vectors[:3], atol=1e-4)


def test_reingest_only_reembeds_changed_posts(any_store: SentenceStore, embedder: Embedder) -> None:
    thread = sample_thread()
    ingest_threads([thread], any_store, embedder)
    unchanged = ingest_threads([thread], any_store, embedder)
    assert (unchanged.embedded, unchanged.skipped_unchanged, unchanged.sentences) == (0, 4, 0)

    edited = thread.model_copy(deep=True)
    edited.posts[2].text = "Stouts are best at cellar temperature, about 12 degrees. Really."
    edited.posts = [p for p in edited.posts if p.id != "p4"]  # p4 deleted on the forum
    edited.posts.append(
        Post(id="p5", number=5, kind="answer", text="Pilsners want 4 degrees. Nothing colder.")
    )
    stats = ingest_threads([edited], any_store, embedder)
    assert (stats.embedded, stats.skipped_unchanged, stats.removed_posts) == (2, 2, 1)

    sentences, vectors = any_store.thread_sentences(thread.id)
    by_post: dict[str, list[str]] = {}
    for s in sentences:
        by_post.setdefault(s.post_id, []).append(s.text)
    assert "p4" not in by_post
    assert by_post["p3"] == ["Stouts are best at cellar temperature, about 12 degrees.", "Really."]
    assert by_post["p5"][0] == "Pilsners want 4 degrees."
    assert len(sentences) == vectors.shape[0]
    assert any_store.get_thread(thread.id).post("p4") is None


def test_reingest_renews_the_provenance_of_posts_whose_text_did_not_change(
    any_store: SentenceStore, embedder: Embedder
) -> None:
    # A post's sentences repeat its number, author and link: a re-ingest that left the text alone (a post
    # deleted above it renumbers it, the thread moved to a new URL, a user renamed) kept the old ones, so its
    # highlights said "post #4" of a thread showing it as #3 and linked the old address.
    thread = sample_thread()
    ingest_threads([thread], any_store, embedder)
    moved = thread.model_copy(deep=True)
    moved.url = "https://example.org/t/serve-moved"
    moved.posts = [p for p in moved.posts if p.id != "p3"]
    for number, post in enumerate(moved.posts, start=1):
        post.number = number
        post.url = None if post.id == "p4" else f"https://example.org/t/serve-moved#{post.id}"
    moved.posts[0].author = "asker-renamed"
    stats = ingest_threads([moved], any_store, embedder)
    assert (stats.embedded, stats.removed_posts) == (0, 1)  # no text changed: nothing embedded again

    sentences, vectors = any_store.thread_sentences(thread.id)
    posts = {p.id: p for p in moved.posts}
    assert {s.post_id for s in sentences} == set(posts) and len(sentences) == vectors.shape[0]
    for s in sentences:
        post = posts[s.post_id]
        assert (s.post_number, s.author, s.url) == (post.number, post.author, post.url or moved.url), s
    assert [s.post_number for s in sentences] == sorted(s.post_number for s in sentences)


def test_ingest_path_is_a_run_with_metrics(tmp_path: Path, tldrlab_home: Path) -> None:
    from tldrlab.runs import open_registry
    from tldrlab.runs.run import read_manifest

    path = tmp_path / "threads.json"
    path.write_text(
        json.dumps([sample_thread("a").model_dump(mode="json"), sample_thread("b").model_dump(mode="json")])
    )
    stats, run_id = ingest_path(path, show_progress=False)
    assert stats.thread_ids == ["a", "b"]
    record = open_registry().get(run_id)
    assert record.kind == "ingest" and record.status.value == "completed"
    manifest = read_manifest(record.run_dir)
    assert manifest["metrics"]["threads"] == 2
    assert manifest["metrics"]["sentences"] == stats.sentences > 0
    assert manifest["metrics"]["sentences_per_s"] > 0
    # a second run over the same file embeds nothing
    stats2, _ = ingest_path(path, show_progress=False)
    assert stats2.embedded == 0 and stats2.skipped_unchanged == 8


def test_stackexchange_dump_ingests_with_links(
    shared_data: Path, tmp_path: Path, embedder: Embedder, store: SentenceStore
) -> None:
    # a slice of the real dump: the first 3 questions and their answers
    source = (shared_data / "stackexchange_beer" / "Posts.xml").read_text(encoding="utf-8-sig")
    # read as load_threads reads it, stopping after those 3 (the whole dump is 663 threads)
    threads = read_threads(shared_data / "stackexchange_beer" / "Posts.xml", limit=3)
    picked = [t for t in threads if t.id in {"1", "2", "3"}]
    assert len(picked) == 3 and source
    stats = ingest_threads(picked, store, embedder)
    assert stats.threads == 3 and stats.sentences > 10
    sentences, _ = store.thread_sentences("1")
    assert {s.url for s in sentences} >= {
        "https://beer.stackexchange.com/q/1",
        "https://beer.stackexchange.com/a/4",
    }


def test_bad_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        load_threads(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "x", "posts": [{"id": 1}]}')
    with pytest.raises(InvalidInputError):
        load_threads(bad, "native")
