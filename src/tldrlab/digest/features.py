"""Per-sentence features for the learned highlight scorer: the signals the heuristic already computes.

Every feature is computed from one thread (or document, or meeting) alone, so the same function serves
training and ranking. Similarities come both raw and min-max scaled within the thread, because a scorer
shared across threads needs "how central is this sentence here" as well as "how central in absolute terms".

The mode says which scorer applies: `query` when a query is given; for a thread of several posts,
`forum_votes` when its posts have votes (and they may be used), else `forum`; `document` otherwise (a paper
abstract, a single post).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from tldrlab.data.threads import Thread
from tldrlab.digest.signals import bm25_scores, centrality, minmax, neighbour_mean
from tldrlab.store.base import SentenceRecord

ScorerMode = Literal["document", "forum", "forum_votes", "query"]

FEATURES: tuple[str, ...] = (
    "centrality",
    "centrality_scaled",
    "title_cosine",
    "title_cosine_scaled",
    "has_title",
    "query_cosine_scaled",
    "bm25_scaled",
    "query_hybrid_neighbours_1",
    "query_hybrid_neighbours_2",
    "query_hybrid_neighbours_4",
    "position_in_post",
    "first_in_post",
    "post_position",
    "question_post",
    "answer_post",
    "votes",
    "top_voted_post",
    "has_votes",
    "log_words",
    "short",
    "interrogative",
    "neighbours_query_free",
    "post_title_cosine",
    "post_centrality",
    "claim_cue",
    "background_cue",
    "result_cue",
    "first_person",
)
"""Column order of `sentence_features`; a scorer file names the features it was trained on."""


# Cue words of what a sentence does, chosen from word statistics of the SciTLDR *train* split (the words
# most and least often in the sentence closest to the author's TL;DR); each is a 0/1 feature whose weight
# every mode learns on its own train data.
CLAIM_CUES = frozenset(
    (
        "propose",
        "proposes",
        "proposed",
        "present",
        "presents",
        "introduce",
        "introduces",
        "novel",
        "develop",
        "develops",
        "paper",
        "called",
        "framework",
        "here",
        "explore",
        "investigate",
        "study",
        "analyze",
        "new",
        "approach",
    )
)
BACKGROUND_CUES = frozenset(
    (
        "however",
        "been",
        "have",
        "typically",
        "often",
        "recently",
        "important",
        "critical",
        "difficult",
        "challenging",
        "limited",
        "due",
        "especially",
        "moreover",
        "finally",
        "since",
        "applications",
    )
)
RESULT_CUES = frozenset(
    (
        "outperforms",
        "outperform",
        "experiments",
        "experimental",
        "results",
        "achieve",
        "achieves",
        "achieved",
        "significant",
        "extensive",
        "baseline",
        "baselines",
        "state",
        "art",
        "benchmark",
        "benchmarks",
    )
)
FIRST_PERSON = frozenset(("we", "our", "us", "i", "my"))
WORDS = re.compile(r"[a-z]+")


def scorer_mode(thread: Thread | None, query: str | None, use_score: bool = True) -> ScorerMode:
    if query:
        return "query"
    if thread is None or len(thread.posts) < 2:
        return "document"
    voted = use_score and any(p.score for p in thread.posts)
    return "forum_votes" if voted else "forum"


def post_means(values: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Each item's value replaced by the mean over its group."""
    keys = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    index = np.array([keys[g] for g in groups])
    sums = np.bincount(index, weights=values, minlength=len(keys))
    counts = np.bincount(index, minlength=len(keys))
    return np.asarray(sums[index] / counts[index], dtype=np.float64)


def sentence_features(
    sentences: Sequence[SentenceRecord],
    vectors: np.ndarray,
    thread: Thread | None,
    *,
    title_vector: np.ndarray | None = None,
    query: str | None = None,
    query_vector: np.ndarray | None = None,
    use_score: bool = True,
) -> np.ndarray:
    """Shape (len(sentences), len(FEATURES)), float64 (columns in `FEATURES` order)."""
    n = len(sentences)
    columns: dict[str, np.ndarray] = {name: np.zeros(n) for name in FEATURES}
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    vectors = np.asarray(vectors, dtype=np.float32)
    groups = [s.post_id for s in sentences]
    central = centrality(vectors)
    columns["centrality"] = central
    columns["centrality_scaled"] = minmax(central)
    title = np.zeros(n)
    if title_vector is not None:
        title = np.asarray(vectors @ title_vector, dtype=np.float64)
        columns["title_cosine"] = title
        columns["title_cosine_scaled"] = minmax(title)
        columns["has_title"] = np.ones(n)
    if query:
        texts = [s.text for s in sentences]
        dense = (
            minmax(np.asarray(vectors @ query_vector, dtype=np.float64))
            if query_vector is not None
            else np.zeros(n)
        )
        sparse = minmax(bm25_scores(texts, query))
        columns["query_cosine_scaled"] = dense
        columns["bm25_scaled"] = sparse
        hybrid = 0.5 * dense + 0.5 * sparse
        for radius in (1, 2, 4):
            columns[f"query_hybrid_neighbours_{radius}"] = neighbour_mean(hybrid, groups, radius)
    columns["neighbours_query_free"] = neighbour_mean(
        columns["centrality_scaled"] + columns["title_cosine_scaled"], groups, 2
    )
    columns["post_title_cosine"] = post_means(title, groups)
    columns["post_centrality"] = post_means(central, groups)
    per_post: dict[str, int] = {}
    for s in sentences:
        per_post[s.post_id] = max(per_post.get(s.post_id, 0), s.sentence_index + 1)
    posts = {p.id: p for p in thread.posts} if thread is not None else {}
    numbers = [p.number for p in thread.posts] if thread is not None and thread.posts else [1]
    first, last = min(numbers), max(numbers)
    scores = [max(p.score or 0, 0) for p in posts.values() if p.score is not None] if use_score else []
    best = max(scores) if scores else 0
    for i, s in enumerate(sentences):
        count = per_post[s.post_id]
        columns["position_in_post"][i] = s.sentence_index / max(1, count - 1)
        columns["first_in_post"][i] = float(s.sentence_index == 0)
        columns["post_position"][i] = (s.post_number - first) / max(1, last - first)
        words = len(s.text.split())
        columns["log_words"][i] = math.log1p(words)
        columns["short"][i] = float(words < 4)
        columns["interrogative"][i] = float(s.text.rstrip().endswith("?"))
        tokens = set(WORDS.findall(s.text.lower()))
        columns["claim_cue"][i] = float(bool(tokens & CLAIM_CUES))
        columns["background_cue"][i] = float(bool(tokens & BACKGROUND_CUES))
        columns["result_cue"][i] = float(bool(tokens & RESULT_CUES))
        columns["first_person"][i] = float(bool(tokens & FIRST_PERSON))
        post = posts.get(s.post_id)
        if post is None:
            continue
        columns["question_post"][i] = float(post.kind == "question")
        columns["answer_post"][i] = float(post.kind == "answer")
        if best > 0 and post.score is not None:
            votes = max(post.score, 0)
            columns["votes"][i] = math.log1p(votes) / math.log1p(best)
            columns["top_voted_post"][i] = float(votes == best and post.kind != "question")
            columns["has_votes"][i] = 1.0
    return np.stack([columns[name] for name in FEATURES], axis=1)
