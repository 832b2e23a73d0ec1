"""Highlights: centrality + signals + MMR, query-aware hybrid, baselines; real MiniLM vectors."""

from __future__ import annotations

import numpy as np
import pytest
from digest_helpers import sample_thread

from tldrlab.digest.baselines import BASELINES, lexrank, textrank
from tldrlab.digest.highlights import HighlightOptions, select_mmr, thread_highlights
from tldrlab.digest.ingest import ingest_threads
from tldrlab.digest.pipeline import DigestOptions
from tldrlab.digest.signals import minmax, neighbour_mean
from tldrlab.embed.base import Embedder
from tldrlab.errors import NotFoundError
from tldrlab.store.base import SentenceStore


def test_highlights_carry_provenance_and_spread_across_posts(
    store: SentenceStore, embedder: Embedder
) -> None:
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    found = thread_highlights(store, thread.id, HighlightOptions(k=4), embedder=embedder)
    assert [h.rank for h in found] == [1, 2, 3, 4]
    assert len({h.id for h in found}) == 4
    for h in found:
        post = thread.post(h.post_id)
        assert post is not None and post.text[h.start : h.end] == h.text
        assert h.url == post.url and h.thread_id == thread.id and h.id == f"{h.post_id}:{h.sentence_index}"
    # at most 2 per post (the cap), and the short "Thanks!" never makes it
    assert max(sum(h.post_id == p for h in found) for p in {h.post_id for h in found}) <= 2
    assert all(h.text != "Thanks!" for h in found)
    # the accepted, top-voted answer leads
    assert found[0].post_id == "p2"


def test_accepted_flag_and_votes_change_the_ranking(store: SentenceStore, embedder: Embedder) -> None:
    thread = sample_thread()
    # flip the signals: the glass post becomes the accepted, top-voted answer
    for post in thread.posts:
        post.accepted = post.id == "p4"
        post.score = 50 if post.id == "p4" else 0
    ingest_threads([thread], store, embedder)
    with_signals = thread_highlights(
        store, thread.id, HighlightOptions(k=1, accepted_weight=1.0), embedder=embedder
    )
    without = thread_highlights(
        store,
        thread.id,
        HighlightOptions(k=1, use_accepted=False, use_score=False),
        embedder=embedder,
    )
    assert with_signals[0].post_id == "p4"
    assert without[0].post_id != "p4"


def test_query_aware_hybrid_finds_the_matching_sentence(store: SentenceStore, embedder: Embedder) -> None:
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    found = thread_highlights(
        store, thread.id, HighlightOptions(k=2, q="which glass shape keeps aroma"), embedder=embedder
    )
    assert found[0].post_id == "p4"
    stouts = thread_highlights(
        store, thread.id, HighlightOptions(k=1, q="barleywines"), embedder=None
    )  # BM25 only
    assert stouts[0].post_id == "p3" and "barleywines" in stouts[0].text


def test_a_blank_query_is_no_query(store: SentenceStore, embedder: Embedder) -> None:
    """`--q "   "` / `?q=%20` ranked query-aware with no words to rank by (and cached apart from no query)."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    assert HighlightOptions(q=" \t ").q is None and DigestOptions(q="  ").q is None
    assert HighlightOptions(q=" glass ").q == " glass "
    plain = thread_highlights(store, thread.id, HighlightOptions(k=3), embedder=embedder)
    blank = thread_highlights(store, thread.id, HighlightOptions(k=3, q="   "), embedder=embedder)
    assert [(h.id, h.score) for h in blank] == [(h.id, h.score) for h in plain]


def test_a_query_without_a_letter_or_digit_is_no_query(store: SentenceStore, embedder: Embedder) -> None:
    """A zero-width space (`?q=%E2%80%8B`), punctuation or an emoji alone has no words to rank by either:
    it ranked query-aware (BM25 all zeros, the embedder's vector of an unknown token) and was cached apart."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    plain = thread_highlights(store, thread.id, HighlightOptions(k=3), embedder=embedder)
    for query in ("\u200b", "???", "\u00ad ...", "\U0001f37a", "\u0301"):
        assert HighlightOptions(q=query).q is None and DigestOptions(q=query).q is None, repr(query)
        found = thread_highlights(store, thread.id, HighlightOptions(k=3, q=query), embedder=embedder)
        assert [(h.id, h.score) for h in found] == [(h.id, h.score) for h in plain], repr(query)
    for query in ("12", "é", "啤酒", "C++"):
        assert HighlightOptions(q=query).q == query


def test_unknown_thread_is_not_found(store: SentenceStore) -> None:
    with pytest.raises(NotFoundError):
        thread_highlights(store, "nope", HighlightOptions())


def test_mmr_avoids_near_duplicates() -> None:
    vectors = np.array([[1.0, 0.0], [0.999, 0.0447], [0.0, 1.0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = np.array([1.0, 0.95, 0.6])
    assert select_mmr(relevance, vectors, ["a", "b", "c"], 2, diversity=0.0) == [0, 1]
    assert select_mmr(relevance, vectors, ["a", "b", "c"], 2, diversity=1.0) == [0, 2]
    # the per-group cap only holds while other groups have sentences left
    assert select_mmr(relevance, vectors, ["a", "a", "a"], 3, diversity=0.0, max_per_group=1) == [0, 1, 2]
    assert minmax(np.array([3.0, 3.0])).tolist() == [0.0, 0.0]
    # query context: windows never cross a post boundary
    smoothed = neighbour_mean(np.array([3.0, 0.0, 0.0, 6.0, 0.0]), ["a", "a", "a", "b", "b"], radius=1)
    assert smoothed.tolist() == [1.5, 1.0, 0.0, 3.0, 3.0]


def test_mmr_redundancy_is_against_every_earlier_pick() -> None:
    """A near-duplicate of the first pick stays penalised after an unrelated second pick: redundancy is the
    highest similarity to anything picked so far, not to the latest pick."""
    vectors = np.array([[1.0, 0.0, 0.0], [0.999, 0.0447, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    relevance = np.array([1.0, 0.95, 0.9, 0.8])  # first, its near-duplicate, two unrelated ones
    assert select_mmr(relevance, vectors, ["a", "b", "c", "d"], 3, diversity=1.0) == [0, 2, 3]
    assert select_mmr(relevance, vectors, ["a", "b", "c", "d"], 3, diversity=0.0) == [0, 1, 2]


def test_baselines_rank_the_central_sentence_first() -> None:
    texts = [
        "The weather was nice.",
        "Hops add bitterness and aroma to beer.",
        "Bitterness in beer comes from hops.",
        "Aroma hops are added late to beer.",
        "My cat sleeps a lot.",
    ]
    for scores in (lexrank(texts), textrank(texts)):
        assert int(np.argmax(scores)) in (1, 2, 3)
        assert int(np.argmin(scores)) in (0, 4)
    assert BASELINES["lead"](texts).argmax() == 0
