"""Do a generated bullet's citations support it? Scores per (bullet, cited sentence), and the filter.

Two measures, each in [0, 1] (higher: better supported):

- `cosine`: cosine similarity of the bullet and the sentence with the sentence embedder the digest already
  uses (MiniLM); catches paraphrase, but two sentences on the same topic score high even when they disagree.
- `overlap`: the share of the bullet's content words (no stop words) that occur in the sentence; what a
  bullet adds that its sentence does not say lowers it.

`check_support` keeps a bullet's citations that reach the threshold and drops the rest; a bullet left with
none is unsupported: dropped, or kept with `supported=False` when the caller asks to mark instead. The
default measure and threshold were chosen on a tuning half of the beer threads (docs/digest.md, "Citation
support"), not on the half the shares are reported on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tldrlab.digest.highlights import STOPWORDS, Highlight, tokenize
from tldrlab.digest.summarizers.base import Bullet
from tldrlab.embed.base import Embedder

SupportMeasure = Literal["cosine", "overlap"]
DEFAULT_MEASURE: SupportMeasure = "cosine"
DEFAULT_THRESHOLD = 0.77
"""The best accuracy on 42 hand-labelled (bullet, cited sentence) pairs of the beer tuning half (0.95;
docs/digest.md, "Citation support threshold"; bench/data/ holds the labels)."""


@dataclass(frozen=True)
class CitedBullet:
    """A generated bullet before the support check: its text and the 0-based highlights it cites."""

    text: str
    cited: list[int]


def content_words(text: str) -> set[str]:
    return {w for w in tokenize(text) if w not in STOPWORDS}


def overlap(bullet: str, sentence: str) -> float:
    """Share of the bullet's content words found in the sentence (1.0 for a bullet with none)."""
    mine = content_words(bullet)
    if not mine:
        return 1.0
    return len(mine & content_words(sentence)) / len(mine)


def support_scores(
    bullets: list[CitedBullet],
    highlights: list[Highlight],
    *,
    measure: SupportMeasure = DEFAULT_MEASURE,
    embedder: Embedder | None = None,
) -> list[list[float]]:
    """For each bullet, one score per cited highlight (in the bullet's citation order)."""
    if measure == "overlap" or embedder is None:
        return [[overlap(b.text, highlights[i].text) for i in b.cited] for b in bullets]
    cited = sorted({i for b in bullets for i in b.cited})
    if not bullets or not cited:
        return [[] for _ in bullets]
    vectors = embedder.encode([b.text for b in bullets] + [highlights[i].text for i in cited])
    bullet_vectors, sentence_vectors = vectors[: len(bullets)], vectors[len(bullets) :]
    where = {index: row for row, index in enumerate(cited)}
    return [
        [float(np.clip(bullet_vectors[b] @ sentence_vectors[where[i]], 0.0, 1.0)) for i in bullet.cited]
        for b, bullet in enumerate(bullets)
    ]


def recite_unsupported(
    bullets: list[CitedBullet],
    highlights: list[Highlight],
    *,
    measure: SupportMeasure = DEFAULT_MEASURE,
    threshold: float = DEFAULT_THRESHOLD,
    embedder: Embedder | None = None,
) -> tuple[list[CitedBullet], int]:
    """Bullets none of whose citations support them, re-cited to the one key sentence that does (the best
    one, when it reaches `threshold`); returns the bullets and how many were re-cited.

    Small models often restate a key sentence under its neighbour's number; the sentence the bullet rests on
    is then known, and citing it is more useful than dropping the bullet. The same threshold decides, so a
    re-cited bullet is exactly as supported as one cited right."""
    scores = support_scores(bullets, highlights, measure=measure, embedder=embedder)
    wrong = [b for b, per in enumerate(scores) if not any(s >= threshold for s in per)]
    if not wrong:
        return bullets, 0
    everything = list(range(len(highlights)))
    candidates = [CitedBullet(bullets[b].text, everything) for b in wrong]
    out, recited = list(bullets), 0
    for b, per in zip(
        wrong, support_scores(candidates, highlights, measure=measure, embedder=embedder), strict=True
    ):
        best = int(np.argmax(per)) if per else -1
        if best >= 0 and per[best] >= threshold:
            out[b], recited = CitedBullet(bullets[b].text, [best]), recited + 1
    return out, recited


def check_support(
    bullets: list[CitedBullet],
    highlights: list[Highlight],
    *,
    measure: SupportMeasure = DEFAULT_MEASURE,
    threshold: float = DEFAULT_THRESHOLD,
    embedder: Embedder | None = None,
    mark: bool = False,
) -> list[Bullet]:
    """Bullets with their citations that reach `threshold`; unsupported ones dropped (marked if `mark`)."""
    scores = support_scores(bullets, highlights, measure=measure, embedder=embedder)
    out: list[Bullet] = []
    for bullet, per_citation in zip(bullets, scores, strict=True):
        kept = [i for i, score in zip(bullet.cited, per_citation, strict=True) if score >= threshold]
        best = max(per_citation, default=0.0)
        if kept:
            ids = [highlights[i].id for i in kept]
            out.append(Bullet(text=bullet.text, citations=ids, support=round(best, 4), supported=True))
        elif mark:
            ids = [highlights[i].id for i in bullet.cited]
            out.append(Bullet(text=bullet.text, citations=ids, support=round(best, 4), supported=False))
    return out
