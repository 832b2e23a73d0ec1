"""Highlights: the sentences of a thread worth reading, each with exact provenance.

Query-free ("what matters here"): a sentence's relevance is its centrality in the thread (cosine to the
centroid of all sentence vectors), how close it is to the thread's topic (the title, when an embedder is
given), and thread signals when present and allowed (post score, accepted answer). Query-aware (`q`): a hybrid
of vector similarity and BM25, each min-max normalised over the thread so neither scale dominates. Either way
the final pick is MMR: relevance minus redundancy with what was already picked, with a cap per post so the
highlights spread across the thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from tldrlab.configmodel import ConfigModel
from tldrlab.data.threads import Thread
from tldrlab.digest.candidates import highlight_candidates
from tldrlab.digest.features import post_means, scorer_mode, sentence_features
from tldrlab.digest.reranker import cached_encoder, rerank
from tldrlab.digest.scorers import DEFAULT_SCORERS, LinearScorer, ScorerName, resolve_scorer
from tldrlab.digest.signals import STOPWORDS as STOPWORDS  # re-exported: older imports name it here
from tldrlab.digest.signals import bm25_scores, centrality, minmax, neighbour_mean
from tldrlab.digest.signals import tokenize as tokenize
from tldrlab.embed.base import Embedder
from tldrlab.report import Report, visible_controls
from tldrlab.store.base import SentenceRecord, SentenceStore, ThreadSnapshot

HIGHLIGHTER_VERSION = "5:" + ",".join(f"{mode}={name}" for mode, name in sorted(DEFAULT_SCORERS.items()))
"""Part of the digest cache key: digests made by an older default ranking are not served again (2: the
candidate rules of `candidates.py`; 3: learned forum models choose posts, the heuristic orders their
sentences; 4: a sentence said in several posts is picked once; 5: a "> " line after any line break is
quoted text, questions and lead-ins of other scripts are no bullets; then the default scorer of each
mode)."""


def _blank_is_none(value: Any) -> Any:
    # no letter or digit, no word to rank by: whitespace, a zero-width space, punctuation, an emoji
    return None if isinstance(value, str) and not any(c.isalnum() for c in value) else value


MAX_QUERY_CHARS = 2000
"""The longest query (GET /threads/{id}/highlights, POST /stream_summary, the CLI's --q): ranking reads every
word of it (BM25), so a query of a whole request body (20 MB) took minutes of CPU."""

Query = Annotated[
    Annotated[str, StringConstraints(max_length=MAX_QUERY_CHARS)] | None, BeforeValidator(_blank_is_none)
]
"""A query; one without a letter or digit (whitespace, a zero-width space, punctuation, an emoji) is no
query (else it switched to query-aware ranking with no words to rank by, and `?q=%20` cached apart from no
query)."""


class HighlightOptions(ConfigModel):
    """How highlights are picked.

    What the defaults rest on: the heuristic's weights below are round values set by hand, never searched
    over any data set; they were however written while looking at the evaluation splits (SciTLDR dev, QMSum
    val, beer threads; the query neighbour context was added after an early QMSum val run), so the
    heuristic's figures on those splits are not strictly held-out. The learned scorers (`learned_v1`,
    `learned_v2`) were fitted on train splits only (SciTLDR train, QMSum train, the train side of the beer
    thread split), their features and penalties chosen per mode by cross-validation on them; `scorer="auto"`
    uses the train-chosen one (learned_v2) in each mode where it beat the heuristic on the dev/val split with
    the paired-bootstrap interval above zero: every mode (docs/digest.md)."""

    model_config = ConfigDict(allow_inf_nan=False)

    k: int = Field(default=5, ge=1, le=100)
    """Number of highlights to return."""
    scorer: ScorerName = "auto"
    """Relevance scorer: `heuristic` (the weights below), `learned_v1` or `learned_v2` (the packaged learned
    scorers; v2 adds sentence cues), or `auto`: per mode (document, forum thread, query) the one
    `scorers.DEFAULT_SCORERS` names. The weights
    below apply to the heuristic only, except `accepted_weight`; `use_score`, `use_accepted` and the candidate
    rules apply to both."""
    q: Query = None
    """Optional query: switches to query-aware ranking (hybrid vector + BM25)."""
    diversity: float = Field(default=0.3, ge=0.0, le=1.0)
    """MMR trade-off: 0 ranks by relevance only, higher values penalise sentences similar to earlier picks."""
    max_per_post: int | None = Field(default=2, ge=1)
    """At most this many highlights from one post (None: no cap)."""
    centrality_weight: float = 1.0
    """Weight of cosine similarity to the thread's sentence centroid."""
    title_weight: float = 1.0
    """Weight of cosine similarity to the thread title (needs an embedder)."""
    score_weight: float = 0.3
    """Weight of the post's votes/likes, log-scaled and normalised by the thread's best post."""
    accepted_weight: float = 0.3
    """Bonus for sentences of the accepted answer (the learned scorer: this times its relevance range)."""
    use_score: bool = True
    """Use post scores (votes) when the thread has them."""
    use_accepted: bool = True
    """Use the accepted-answer flag; set False to evaluate without it."""
    question_penalty: float = 0.15
    """Subtracted from question sentences when the thread has answers: answers hold what is worth reading."""
    query_vector_weight: float = 0.5
    """Query-aware mix: this much vector similarity, the rest BM25."""
    min_words: int = 4
    """Sentences shorter than this are demoted (greetings, 'Thanks!')."""
    query_context_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    """Query-aware: mix each sentence's relevance with its neighbours' (same post, +-2 sentences), because
    the text answering a query comes in runs, not in isolated sentences."""
    within_post_weight: float = Field(default=0.3, ge=0.0, le=10.0)
    """Learned scorer in forum threads: it picks the posts, the heuristic orders sentences inside a post;
    this is how much that order counts against the gap between posts (post scores span 0..1)."""
    outside_quotes: bool = False
    """Quoted text ("> " lines) is never a highlight; True lets a quote of an outside source (one that
    reproduces no sentence of the thread) count as its post's text. Boilerplate lines never count."""


class Highlight(BaseModel):
    """One highlighted sentence and where to find it."""

    id: str
    """`post_id:sentence_index`; what bullets cite."""
    rank: int
    score: float
    text: str
    thread_id: str
    post_id: str
    post_number: int
    sentence_index: int
    start: int
    """Character offset of the sentence in the post's text."""
    end: int
    author: str | None = None
    url: str | None = None
    """Link to the post."""


def query_free_relevance(
    sentences: Sequence[SentenceRecord],
    vectors: np.ndarray,
    thread: Thread | None,
    options: HighlightOptions,
    title_vector: np.ndarray | None = None,
) -> np.ndarray:
    """Relevance of each sentence without a query (higher is better)."""
    relevance = options.centrality_weight * centrality(vectors)
    if title_vector is not None and options.title_weight:
        relevance += options.title_weight * np.asarray(vectors @ title_vector, dtype=np.float64)
    if thread is not None:
        posts = {p.id: p for p in thread.posts}
        has_answers = any(p.kind == "answer" for p in thread.posts)
        scores = [max(p.score or 0, 0) for p in thread.posts] if options.use_score else []
        best = math.log1p(max(scores)) if scores and max(scores) > 0 else 0.0
        for i, sentence in enumerate(sentences):
            post = posts.get(sentence.post_id)
            if post is None:
                continue
            if best > 0 and post.score is not None:
                relevance[i] += options.score_weight * math.log1p(max(post.score, 0)) / best
            if options.use_accepted and post.accepted:
                relevance[i] += options.accepted_weight
            if has_answers and post.kind == "question":
                relevance[i] -= options.question_penalty
    short = np.array([len(s.text.split()) < options.min_words for s in sentences], dtype=bool)
    if short.size:
        relevance[short] -= 0.5
    return relevance


def query_relevance(
    texts: Sequence[str], vectors: np.ndarray, query: str, query_vector: np.ndarray, vector_weight: float
) -> np.ndarray:
    """Hybrid: min-max(cosine to the query) and min-max(BM25), mixed by `vector_weight`."""
    dense = minmax(np.asarray(vectors @ query_vector, dtype=np.float64))
    sparse = minmax(bm25_scores(texts, query))
    return vector_weight * dense + (1.0 - vector_weight) * sparse


def select_mmr(
    relevance: np.ndarray,
    vectors: np.ndarray,
    groups: Sequence[str],
    k: int,
    diversity: float,
    max_per_group: int | None = None,
    eligible: np.ndarray | None = None,
    keys: Sequence[str] | None = None,
) -> list[int]:
    """Greedy maximal marginal relevance: pick by relevance minus similarity to what is already picked.

    Only `eligible` items (all when None) are picked; fewer than `k` come back when fewer are eligible.
    Items sharing a `key` with a pick are never picked after it: MMR only lowers an exact repeat's score
    (by `diversity`), so without keys "Same." said in four posts could fill four places."""
    n = len(relevance)
    chosen: list[int] = []
    per_group: dict[str, int] = {}
    # as arrays once: each pick then marks its group's and its key's items in one comparison
    group_of = np.asarray(groups, dtype=object)
    key_of = None if keys is None else np.asarray(keys, dtype=object)
    best_sim = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool).copy()
    scale = float(relevance.max() - relevance.min()) if n else 0.0
    scale = scale if scale > 1e-12 else 1.0
    while len(chosen) < min(k, n):
        penalty = np.where(np.isfinite(best_sim), best_sim, 0.0) * diversity * scale
        mmr = np.where(available, relevance - penalty, -np.inf)
        i = int(np.argmax(mmr))
        if not np.isfinite(mmr[i]):
            break
        chosen.append(i)
        available[i] = False
        if key_of is not None:
            available &= key_of != key_of[i]
        per_group[groups[i]] = per_group.get(groups[i], 0) + 1
        if max_per_group is not None and per_group[groups[i]] >= max_per_group:
            same = group_of == group_of[i]
            if (available & ~same).any():  # only cap while other posts remain
                available &= ~same
        best_sim = np.maximum(best_sim, vectors @ vectors[i])
    return chosen


def rank_highlights(
    sentences: Sequence[SentenceRecord],
    vectors: np.ndarray,
    options: HighlightOptions,
    *,
    thread: Thread | None = None,
    title_vector: np.ndarray | None = None,
    query_vector: np.ndarray | None = None,
) -> list[Highlight]:
    """Pick `options.k` highlights among `sentences` (rows of `vectors` are unit-normalised)."""
    if not sentences:
        return []
    vectors = np.asarray(vectors, dtype=np.float32)
    relevance = sentence_relevance(
        sentences, vectors, options, thread=thread, title_vector=title_vector, query_vector=query_vector
    )
    eligible = highlight_candidates(sentences, thread, outside_quotes=options.outside_quotes)
    picked = select_mmr(
        relevance,
        vectors,
        [s.post_id for s in sentences],
        options.k,
        options.diversity,
        options.max_per_post,
        eligible,
        keys=[same_sentence_key(s.text) for s in sentences],
    )
    return [to_highlight(sentences[i], float(relevance[i]), rank) for rank, i in enumerate(picked, start=1)]


def same_sentence_key(text: str) -> str:
    """What makes two sentences the same one for a reader: their text up to whitespace and case. A digest
    shows such a sentence once, at its best-ranked place, citing the post it was picked from."""
    return " ".join(text.split()).casefold()


def sentence_relevance(
    sentences: Sequence[SentenceRecord],
    vectors: np.ndarray,
    options: HighlightOptions,
    *,
    thread: Thread | None = None,
    title_vector: np.ndarray | None = None,
    query_vector: np.ndarray | None = None,
    scorer: LinearScorer | None = None,
) -> np.ndarray:
    """Relevance of every sentence under `options.scorer` (higher is better), before MMR and the cap.

    `scorer` overrides the named scorer (an unshipped scorer file under evaluation)."""
    query = options.q if query_vector is not None else None
    mode = scorer_mode(thread, query, options.use_score)
    scorer = scorer or resolve_scorer(options.scorer, mode)
    if scorer is not None:
        features = sentence_features(
            sentences,
            vectors,
            thread,
            title_vector=title_vector,
            query=query,
            query_vector=query_vector if options.query_vector_weight > 0 else None,
            use_score=options.use_score,
        )
        learned = scorer.relevance(features, mode, vectors)
        reranker = scorer.reranker_for(mode)
        if learned is not None and reranker is not None and query:
            spec, adapter = reranker
            eligible = highlight_candidates(sentences, thread, outside_quotes=options.outside_quotes)
            learned = rerank(
                learned,
                query,
                [s.text for s in sentences],
                [s.post_id for s in sentences],
                spec,
                cached_encoder(str(adapter)),
                eligible,
            )
        if learned is not None:
            if mode in ("forum", "forum_votes"):
                heuristic = query_free_relevance(sentences, vectors, thread, options, title_vector)
                learned = posts_then_sentences(
                    learned, heuristic, [s.post_id for s in sentences], options.within_post_weight
                )
            return with_accepted_bonus(learned, sentences, thread, options)
    if options.q and query_vector is not None:
        relevance = query_relevance(
            [s.text for s in sentences], vectors, options.q, query_vector, options.query_vector_weight
        )
        if options.query_context_weight:
            context = neighbour_mean(relevance, [s.post_id for s in sentences], radius=2)
            relevance = (
                1 - options.query_context_weight
            ) * relevance + options.query_context_weight * context
        return relevance
    return query_free_relevance(sentences, vectors, thread, options, title_vector)


def posts_then_sentences(
    post_scores: np.ndarray, sentence_scores: np.ndarray, groups: Sequence[str], within_weight: float
) -> np.ndarray:
    """The learned forum models were trained to find the right post (every sentence of the accepted answer
    is a positive), so they choose posts, and the heuristic orders sentences inside each post: min-max of
    the post means of `post_scores` plus `within_weight` times each sentence's heuristic score relative to
    its post's mean (scaled to a range of 1)."""
    posts = minmax(post_means(post_scores, groups))
    within = sentence_scores - post_means(sentence_scores, groups)
    span = float(within.max() - within.min()) if within.size else 0.0
    return posts + within_weight * (within / span if span > 1e-12 else np.zeros_like(within))


def with_accepted_bonus(
    relevance: np.ndarray,
    sentences: Sequence[SentenceRecord],
    thread: Thread | None,
    options: HighlightOptions,
) -> np.ndarray:
    """The learned scorer never saw the accepted flag (on the forum data it is the truth it was trained to
    find), so when the flag may be used its sentences get `accepted_weight` times the relevance range, the
    heuristic's bonus on the heuristic's scale: a rule, not a learned weight."""
    if thread is None or not options.use_accepted or not relevance.size:
        return relevance
    accepted = {p.id for p in thread.posts if p.accepted}
    if not accepted:
        return relevance
    bonus = options.accepted_weight * float(relevance.max() - relevance.min())
    mask = np.array([s.post_id in accepted for s in sentences])
    return np.where(mask, relevance + bonus, relevance)


def to_highlight(sentence: SentenceRecord, score: float, rank: int) -> Highlight:
    return Highlight(
        id=f"{sentence.post_id}:{sentence.sentence_index}",
        rank=rank,
        score=round(score, 6),
        text=sentence.text,
        thread_id=sentence.thread_id,
        post_id=sentence.post_id,
        post_number=sentence.post_number,
        sentence_index=sentence.sentence_index,
        start=sentence.start,
        end=sentence.end,
        author=sentence.author,
        url=sentence.url,
    )


def thread_highlights(
    store: SentenceStore,
    thread_id: str,
    options: HighlightOptions,
    embedder: Embedder | None = None,
    snapshot: ThreadSnapshot | None = None,
) -> list[Highlight]:
    """Highlights of a stored thread. Without an embedder the title and query vectors are unavailable:
    query-free ranking still works (centrality + signals), a query falls back to BM25 only.

    The thread and its sentences come from one `store.thread_snapshot` (or the caller's `snapshot`, which
    it also hands to the summarizer): read as two calls, a re-ingest committing between them paired one
    version's text, title and accepted flags with another version's sentences, so highlights and citations
    pointed at spans that are not there."""
    if snapshot is None:
        snapshot = store.thread_snapshot(thread_id)
    thread, sentences, vectors = snapshot.thread, snapshot.sentences, snapshot.vectors
    title_vector = query_vector = None
    if embedder is not None:
        texts = [t for t in (thread.title, options.q) if t]
        if texts:
            encoded = embedder.encode(texts)
            title_vector = encoded[0] if thread.title else None
            query_vector = encoded[-1] if options.q else None
    if options.q and query_vector is None:  # no embedder: BM25 only
        options = options.model_copy(update={"query_vector_weight": 0.0})
        query_vector = np.zeros(vectors.shape[1] if vectors.ndim == 2 else 1, np.float32)
    return rank_highlights(
        sentences, vectors, options, thread=thread, title_vector=title_vector, query_vector=query_vector
    )


def highlights_report(highlights: Sequence[Highlight]) -> Report:
    """One block per highlight: rank, score, provenance (thread, post, sentence, span), text, link."""
    report = Report(["highlights"])
    for h in highlights:
        where = f"thread {h.thread_id} · post #{h.post_number} ({h.post_id}) · sentence {h.sentence_index}"
        # a post's text goes to a terminal: its control characters are shown, never run (one for one, so
        # the span still counts the characters shown)
        lines = [f"[{h.rank}] {h.score:.3f}  {where} · chars {h.start}-{h.end}", f"    {h.text}"]
        lines += [f"    {h.url}"] if h.url else []
        report.blocks += [visible_controls(line) for line in lines]
    return report
