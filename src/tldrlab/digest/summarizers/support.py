"""Do a generated bullet's citations support it? Scores per (bullet, cited sentence), and the filter.

Two measures, each in [0, 1] (higher: better supported):

- `cosine`: cosine similarity of the bullet and the sentence with the sentence embedder the digest already
  uses (MiniLM); catches paraphrase, but two sentences on the same topic score high even when they disagree.
- `overlap`: the share of the bullet's content words (no stop words) that occur in the sentence; what a
  bullet adds that its sentence does not say lowers it.

Neither sees negation: "X is safe to drink" and "X is not safe to drink" score high by both. So a cited
sentence that disagrees with the bullet in negation about a content word both use (`polarity_mismatch`; a
word's antonym and "un" + the word deny it too) scores 0 by either measure, whatever its similarity: a
bullet is never kept on a sentence that denies it.

`check_support` keeps a bullet's citations that reach the threshold and drops the rest; a bullet left with
none is unsupported: dropped, or kept with `supported=False` when the caller asks to mark instead. The
default measure and threshold were chosen on a tuning half of the beer threads (docs/digest.md, "Citation
support"), not on the half the shares are reported on.
"""

from __future__ import annotations

import re
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
DEFAULT_POLARITY = True
"""Refuse a cited sentence that disagrees with its bullet in negation (`polarity_mismatch`)."""


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


WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.,;:!?()/\u2014\u2013]|\s-\s")
NEGATION_TEXT = """
not no never none nothing nobody nowhere neither nor without cannot hardly barely scarcely seldom rarely lack
lacks lacking
"""
NEGATIONS = frozenset(NEGATION_TEXT.split())
# a cue followed by one of these denies nothing for sure ("not only lager, but ...", "no matter what
# variety"): the words it reaches are left out of the comparison rather than counted as denied
HEDGES = frozenset({
    ("not", "only"), ("not", "just"), ("not", "merely"), ("no", "matter"), ("no", "doubt"), ("not", "sure"),
    ("not", "certain"),
})  # fmt: skip
# a negation reaches to the end of its clause, at most SCOPE words: "not safe to drink, but ..." denies safe
# and drink, not what follows the comma; the words before the cue (its subject) are not denied. Stopping
# early only misses a contradiction; reaching too far refuses a bullet that agrees ("no chunks of fruit in
# your beer so the effects are lessened" denies neither the beer nor the effects). A preposition other than
# "of" starts an adjunct the negation seldom denies: "not safe (to drink) in summer" is caught by "safe".
CLAUSE_END_TEXT = """
. , ; : ! ? ( ) \u2014 \u2013 - but however although though while whereas yet so because since which who and
in on at for from into
"""
CLAUSE_ENDS = frozenset(CLAUSE_END_TEXT.split())
SCOPE = 6
SUFFIXES = ("iness", "ness", "ing", "ied", "ies", "ed", "es", "s", "y")
FREE = re.compile(r"\b([a-z0-9]+)-free\b")  # "gluten-free" denies gluten, like "non-gluten"


# Antonyms: asserting the first word of a pair denies the second ("served cold" denies "warm", "low in
# alcohol" denies "high"), so a bullet saying one and its sentence the other disagree as "not warm" and "warm"
# do. Only pairs that say opposite things of one property: "light" (colour or body?), "old" (a style's name)
# are left out. One direction is enough: the second word is the one compared.
ANTONYM_PAIRS = (
    ("low", "high"), ("lower", "higher"), ("cold", "warm"), ("cold", "hot"), ("colder", "warmer"),
    ("weak", "strong"), ("weaker", "stronger"), ("small", "large"), ("small", "big"), ("smaller", "larger"),
    ("short", "long"), ("shorter", "longer"), ("slow", "fast"), ("slower", "faster"), ("late", "early"),
    ("cheap", "expensive"), ("bad", "good"), ("worse", "better"), ("dry", "sweet"), ("difficult", "easy"),
    ("dangerous", "safe"), ("unsafe", "safe"), ("false", "true"), ("rare", "common"), ("absent", "present"),
    ("decrease", "increase"), ("decreases", "increases"), ("reduce", "increase"), ("reduces", "increases"),
)  # fmt: skip
DENIES: dict[str, tuple[str, ...]] = {}
for _said, _denied in ANTONYM_PAIRS:
    DENIES[_said] = (*DENIES.get(_said, ()), _denied)
UN_PREFIX_MIN = 4
""""un" + a word of at least this many letters denies that word ("unfiltered" / "filtered"); shorter rests are
seldom words of their own ("under", "unit", "until")."""
NOT_UN_PREFIXED = frozenset({"unless"})
"""Words of "un" + 4 letters or more that deny nothing ("unless" does not deny "less")."""


def stem(word: str) -> str:
    """A crude suffix strip, enough to match "roasted", "roasty" and "roastiness" to "roast"."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def is_negation(word: str, before: str = "") -> bool:
    """A cue that denies what follows. "little" and "few" do too ("little roast character" agrees with "little
    to no roastiness"), "a little" and "a few" do not."""
    return word in NEGATIONS or word.endswith("n't") or (word in ("little", "few") and before != "a")


def denied_by(word: str) -> tuple[str, ...]:
    """The words `word` denies by its meaning: its antonyms' second words, and for "un" + a word that word."""
    rest = word[2:]
    un_word = word.startswith("un") and len(rest) >= UN_PREFIX_MIN and word not in NOT_UN_PREFIXED
    prefixed = (rest,) if un_word and rest not in STOPWORDS else ()
    return DENIES.get(word, ()) + prefixed


def polarities(text: str) -> dict[str, set[bool]]:
    """Each content word (stemmed) of `text` -> whether it occurs denied (True), asserted (False), or both."""
    text = FREE.sub(r"non \1", text.lower().replace("\u2019", "'"))
    words = [w.strip() for w in WORD.findall(text)]
    out: dict[str, set[bool]] = {}
    left, hedged = 0, False  # words the last cue still reaches; whether it only hedges
    for position, word in enumerate(words):
        before = words[position - 1] if position else ""
        after = words[position + 1] if position + 1 < len(words) else ""
        if word == "/":
            continue
        if word in CLAUSE_ENDS:
            left = 0
        elif word == "non":  # "non-alcoholic": the prefix denies the one word it is joined to
            left, hedged = 1, False
        elif is_negation(word, before):
            if "/" in (before, after):  # "no/low alcohol beers": hedges its two words, says neither
                left, hedged = 2, True
            else:
                left, hedged = SCOPE, (word, after) in HEDGES
        elif word not in STOPWORDS and word[0].isalnum():
            if not (left and hedged):
                out.setdefault(stem(word.removesuffix("'s")), set()).add(left > 0)
                for opposite in denied_by(word):  # "not cold" says nothing of "warm" either way: denied twice
                    out.setdefault(stem(opposite), set()).add(left == 0)
            left = max(0, left - 1)
        else:
            left = max(0, left - 1)
    return out


def polarity_mismatch(bullet: str, sentence: str) -> bool:
    """Do `bullet` and `sentence` disagree in negation about a content word both use? True when one of them
    only denies a word the other only asserts ("strong roasted flavour" / "little to no roastiness"); a word
    both deny ("no gluten" / "without gluten") or one uses both ways is no disagreement."""
    mine, theirs = polarities(bullet), polarities(sentence)
    return any(
        len(mine[word]) == 1 and len(theirs[word]) == 1 and mine[word] != theirs[word]
        for word in mine.keys() & theirs.keys()
    )


def support_scores(
    bullets: list[CitedBullet],
    highlights: list[Highlight],
    *,
    measure: SupportMeasure = DEFAULT_MEASURE,
    embedder: Embedder | None = None,
    polarity: bool = DEFAULT_POLARITY,
) -> list[list[float]]:
    """For each bullet, one score per cited highlight (in the bullet's citation order); with `polarity`, 0
    for a sentence that disagrees with the bullet in negation."""
    scores = similarity_scores(bullets, highlights, measure=measure, embedder=embedder)
    if not polarity:
        return scores
    return [
        [
            0.0 if polarity_mismatch(bullet.text, highlights[i].text) else score
            for i, score in zip(bullet.cited, per, strict=True)
        ]
        for bullet, per in zip(bullets, scores, strict=True)
    ]


def similarity_scores(
    bullets: list[CitedBullet],
    highlights: list[Highlight],
    *,
    measure: SupportMeasure = DEFAULT_MEASURE,
    embedder: Embedder | None = None,
) -> list[list[float]]:
    """The measure alone, blind to negation."""
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
    polarity: bool = DEFAULT_POLARITY,
) -> tuple[list[CitedBullet], int]:
    """Bullets none of whose citations support them, re-cited to the one key sentence that does (the best
    one, when it reaches `threshold`); returns the bullets and how many were re-cited.

    Small models often restate a key sentence under its neighbour's number; the sentence the bullet rests on
    is then known, and citing it is more useful than dropping the bullet. The same threshold decides, so a
    re-cited bullet is exactly as supported as one cited right (a sentence that denies it is never chosen)."""
    scores = support_scores(bullets, highlights, measure=measure, embedder=embedder, polarity=polarity)
    wrong = [b for b, per in enumerate(scores) if not any(s >= threshold for s in per)]
    if not wrong:
        return bullets, 0
    everything = list(range(len(highlights)))
    candidates = [CitedBullet(bullets[b].text, everything) for b in wrong]
    out, recited = list(bullets), 0
    for b, per in zip(
        wrong,
        support_scores(candidates, highlights, measure=measure, embedder=embedder, polarity=polarity),
        strict=True,
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
    polarity: bool = DEFAULT_POLARITY,
) -> list[Bullet]:
    """Bullets with their citations that reach `threshold`; unsupported ones dropped (marked if `mark`).
    With `polarity`, a citation that disagrees with its bullet in negation is refused (scores 0)."""
    scores = support_scores(bullets, highlights, measure=measure, embedder=embedder, polarity=polarity)
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
