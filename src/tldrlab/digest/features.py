"""Per-sentence features for the learned highlight scorer: the signals the heuristic already computes.

Every feature is computed from one thread (or document, or meeting) alone, so the same function serves
training and ranking. Similarities come both raw and min-max scaled within the thread, because a scorer
shared across threads needs "how central is this sentence here" as well as "how central in absolute terms".

Groups (`FEATURE_GROUPS`; training adds a group to a mode only when cross-validation on train data says so):
`v1` are the signals of the heuristic plus word cues (what `learned_v1` knows); `sentence_cues` are what a
sentence does inside its abstract or post (states the paper's contribution, "we ..." for the first time,
gives advice, thanks, talks about the question or other answers, where in the post it sits, and the post's
share of advice and chatter); `query_context` is query-term overlap per unit and wider neighbour windows
(meeting transcripts answer a query in runs of dozens of turns).

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
from tldrlab.digest.signals import bm25_scores, centrality, minmax, neighbour_mean, tokenize
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
    # sentence-level cues (learned_v2): what a sentence does inside its abstract or post
    "contribution_cue",
    "first_contribution_in_post",
    "first_we_in_post",
    "last_in_post",
    "position_in_post_squared",
    "thanks_cue",
    "recommend_cue",
    "meta_cue",
    "has_number",
    "post_log_sentences",
    "post_recommend_share",
    "post_chatter_share",
    # query context (learned_v2): query-term overlap and wider neighbour windows
    "query_overlap",
    "query_overlap_neighbours_2",
    "query_overlap_neighbours_8",
    "query_hybrid_neighbours_8",
    "query_hybrid_neighbours_16",
)
"""Column order of `sentence_features`; a scorer file names the features it was trained on (a subset of
these: `learned_v1` knows the first 28, the `v1` group)."""

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "v1": FEATURES[:28],
    "sentence_cues": FEATURES[28:40],
    "query_context": FEATURES[40:],
}
"""Features in groups that training adds or leaves out as a whole (chosen per mode by cross-validation);
`v1` is always in."""


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

# Phrases that state a paper's own contribution: "we (newly) propose ...", "in this paper ...", "our method".
CONTRIBUTION = re.compile(
    r"\b(?:(?:we|this (?:paper|work|article|study))\s+(?:\w+ly\s+)?(?:propose|present|introduce|show|"
    r"demonstrate|develop|describe|investigate|explore|provide|design|offer|find|argue|analy[sz]e|report|"
    r"formulate|prove|establish)"
    r"|in this (?:paper|work|article|study)"
    r"|our (?:method|approach|model|framework|algorithm|technique|system|results?|analysis|contribution))"
)
WE = re.compile(r"\bwe\b")
# Forum chatter that is rarely the answer: thanks, greetings, comments on the question or other answers.
THANKS = re.compile(
    r"\b(?:thanks|thank you|thx|cheers|hope (?:this|that|it) helps|good luck|welcome to|enjoy!?$)"
)
META = re.compile(
    r"(?:^(?:edit|update|source|note|ps|p\.s\.)\b|\b(?:(?:good|great|interesting) question|this question|"
    r"your question|the question|this answer|other answers?|as (?:others|mentioned|said)|i agree|"
    r"not sure|i don'?t know|no idea|see also|link|https?://))"
)
# Answer-like advice: a recommendation, or an imperative opening ("Try ...", "Serve ...", "Don't ...").
RECOMMEND = re.compile(
    r"\b(?:i(?:'d| would)? (?:recommend|suggest|advise)|you (?:should|can|could|need|must|might want|"
    r"will want|want to)|you'?ll (?:want|need)|best (?:way|bet|to)|the (?:answer|reason|key|trick) is|"
    r"make sure|because)\b"
    r"|^(?:try|use|get|make|add|let|keep|put|check|look|go|buy|drink|serve|store|pour|avoid|don'?t|do|"
    r"give|take|start|consider|leave|remember|just|always|never)\b"
)
NUMBER = re.compile(r"\d")


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
        for radius in (1, 2, 4, 8, 16):
            columns[f"query_hybrid_neighbours_{radius}"] = neighbour_mean(hybrid, groups, radius)
        terms = set(tokenize(query))
        overlap = np.array(
            [len(terms & set(tokenize(t))) / len(terms) if terms else 0.0 for t in texts], dtype=np.float64
        )
        columns["query_overlap"] = overlap
        for radius in (2, 8):
            columns[f"query_overlap_neighbours_{radius}"] = neighbour_mean(overlap, groups, radius)
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
        lower = s.text.strip().lower()
        columns["contribution_cue"][i] = float(CONTRIBUTION.search(lower) is not None)
        columns["first_we_in_post"][i] = float(WE.search(lower) is not None)  # made "first" below
        columns["last_in_post"][i] = float(s.sentence_index == count - 1)
        columns["position_in_post_squared"][i] = columns["position_in_post"][i] ** 2
        columns["thanks_cue"][i] = float(THANKS.search(lower) is not None)
        columns["recommend_cue"][i] = float(RECOMMEND.search(lower) is not None)
        columns["meta_cue"][i] = float(META.search(lower) is not None)
        columns["has_number"][i] = float(NUMBER.search(lower) is not None)
        columns["post_log_sentences"][i] = math.log1p(count)
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
    columns["first_contribution_in_post"] = first_in_group(columns["contribution_cue"], sentences)
    columns["first_we_in_post"] = first_in_group(columns["first_we_in_post"], sentences)
    columns["post_recommend_share"] = post_means(columns["recommend_cue"], groups)
    columns["post_chatter_share"] = post_means(np.maximum(columns["thanks_cue"], columns["meta_cue"]), groups)
    return np.stack([columns[name] for name in FEATURES], axis=1)


def first_in_group(flags: np.ndarray, sentences: Sequence[SentenceRecord]) -> np.ndarray:
    """1 for the earliest flagged sentence of each post (by sentence index), 0 elsewhere."""
    first: dict[str, tuple[int, int]] = {}
    for i, s in enumerate(sentences):
        if flags[i] and (s.post_id not in first or s.sentence_index < first[s.post_id][0]):
            first[s.post_id] = (s.sentence_index, i)
    out = np.zeros(len(sentences))
    out[[i for _, i in first.values()]] = 1.0
    return out
