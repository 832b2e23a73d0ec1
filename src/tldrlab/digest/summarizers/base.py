"""What every summarizer shares: the context it gets, the events it streams, and citation handling.

A summarizer's `stream(context)` yields `str` chunks (tokens as they come), optionally a `Draft` (bullets
shown before the final ones) and `Notice`s (messages for the reader), and finally one `list[Bullet]`.
Generative summarizers are prompted with the highlight sentences numbered [1]..[n]; citations like [2],
[1, 3], [2][5] or [2-4] in their output are parsed back to highlight ids (numbers that do not exist are
reported, not silently dropped), and a bullet that cites nothing is attached to the most similar highlight
by embedding (or by word overlap when no embedder is at hand).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from tldrlab.data.sentences import split_sentences
from tldrlab.data.threads import Thread
from tldrlab.digest.highlights import Highlight
from tldrlab.digest.signals import tokenize
from tldrlab.embed.base import Embedder
from tldrlab.errors import ConfigError

CITATION = re.compile(r"\[\s*(\d+(?:\s*(?:[,;]|[-–]|and)\s*\d+)*)\s*\]")
"""A bracketed citation: one number, a list (`,` `;` `and`) or ranges (`2-4`, `2–4`)."""
CITATION_PART = re.compile(r"(\d+)(?:\s*[-–]\s*(\d+))?")
BULLET_PREFIX = re.compile(r"^\s*(?:[-*•·]|\d+[.)])\s+")
AROUND_WORDS = ".,;:!?…\"'“”‘’()[]{}«»*_`—–-"
"""Punctuation that ends or wraps a word in prose (quotes, brackets, emphasis marks), not part of it."""


class Bullet(BaseModel):
    """One TL;DR bullet and the highlight sentences it rests on."""

    text: str
    citations: list[str]
    """Ids (`post_id:sentence_index`) of the highlights this bullet rests on."""
    support: float | None = None
    """How well the cited sentences support the text (the best cited sentence's score; see
    digest/summarizers/support.py); None when not measured (extractive bullets cite themselves)."""
    supported: bool | None = None
    """False for a generated bullet whose citations do not support it (kept only when asked to mark
    instead of drop); None when not checked."""
    from_draft: bool = False
    """Two-stage digests: a bullet of the draft (a key sentence itself, not the model's words), added after
    the final stage's bullets because that stage kept fewer than `top_up` (see summarizers/two_stage.py)."""


@dataclass(frozen=True)
class Draft:
    """Bullets to show at once while a slower stage works (two-stage digests)."""

    bullets: list[Bullet]
    summarizer: str


@dataclass(frozen=True)
class Notice:
    """A message for the reader about how the digest was made (a fallback, dropped bullets)."""

    text: str
    explains_empty: bool = False
    """It says why the summarizer kept no bullet (every one it wrote was dropped): the pipeline then adds no
    guess of its own ("the text held no bullet"), which would contradict it."""


@dataclass
class SummaryContext:
    """Everything a summarizer may use."""

    thread: Thread
    highlights: list[Highlight]
    """Ranked candidate sentences, numbered [1]..[n] in prompts."""
    embedder: Embedder | None = None
    """For citation fallback by similarity; None falls back to word overlap."""
    max_bullets: int = 5
    stop: threading.Event = field(default_factory=threading.Event)
    """Set when the client went away: summarizers stop generating as soon as they see it."""


SummaryEvent = str | Draft | Notice | list[Bullet]


class Summarizer(Protocol):
    name: str

    def cache_params(self) -> dict[str, Any]:
        """Everything that changes the output (model path, prompt, limits): part of the cache key."""

    def stream(self, context: SummaryContext) -> Iterator[SummaryEvent]:
        """Yield text chunks, then the final bullets."""


def numbered_highlights(highlights: list[Highlight]) -> str:
    return "\n".join(f"[{i}] {h.text}" for i, h in enumerate(highlights, start=1))


def split_bullets(text: str, max_bullets: int) -> list[str]:
    """Bullet lines of a model's output; prose without bullets is split into sentences instead."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    bulleted = [BULLET_PREFIX.sub("", line) for line in lines if BULLET_PREFIX.match(line)]
    if not bulleted:
        bulleted = [s.text for s in split_sentences(" ".join(lines))]
    return [b for b in bulleted if b][:max_bullets]


@dataclass(frozen=True)
class ParsedCitations:
    """A bullet's text without its citation markers, and what it cited."""

    text: str
    cited: list[int]
    """0-based indices of the highlights cited that exist, first mention first, each once."""
    invalid: list[int]
    """Cited numbers (1-based, as written) that name no highlight, each once."""

    @property
    def has_citations(self) -> bool:
        return bool(self.cited or self.invalid)


def parse_bullet_citations(text: str, n_highlights: int) -> ParsedCitations:
    """Parse `[2]`, `[2][5]`, `[2, 5]`, `[2; 5]`, `[2-4]` (ranges expand; a reversed range is read as
    written backwards) out of a bullet. Numbers outside 1..n_highlights are collected as invalid."""
    cited: list[int] = []
    invalid: list[int] = []
    for match in CITATION.finditer(text):
        for part in CITATION_PART.finditer(re.sub(r"\band\b", ",", match.group(1))):
            first = int(part.group(1))
            last = int(part.group(2)) if part.group(2) else first
            low, high = min(first, last), max(first, last)
            # a range past the end names at most one invalid number: "[3-999]" must not expand to 997
            for number in range(low, min(high, max(n_highlights, low) + 1) + 1):
                if 1 <= number <= n_highlights:
                    if number - 1 not in cited:
                        cited.append(number - 1)
                elif number not in invalid:
                    invalid.append(number)
    clean = re.sub(r"\s+([.,;:!?])", r"\1", CITATION.sub("", text))
    clean = re.sub(r"\s+", " ", clean).strip()
    return ParsedCitations(clean, cited, invalid)


def bullet_key(text: str) -> str:
    """What makes two bullets the same one for a reader: their words, up to case, whitespace and the
    punctuation around words ("Serve ales warm." and "serve  ales, warm!" are one bullet). Symbols inside or
    after a word's letters are part of it: "Use C++" and "Use C" (or "C#", "5%" and "5") are different
    bullets, which a key of letters and digits only merged, dropping one. A text without words is its own
    key (stripped), so two different runs of symbols stay apart."""
    words = [w.strip(AROUND_WORDS) for w in text.casefold().split()]
    kept = [w for w in words if w]
    return " ".join(kept) if kept else text.strip()


def merge_parsed_repeats(parsed: Iterable[ParsedCitations]) -> list[ParsedCitations]:
    """Generated bullets with repeats (same `bullet_key`; models repeat themselves) merged into their first
    occurrence, which cites what each cited. Done before a summarizer keeps its first `max_bullets`, so a
    repeat never takes another bullet's place; empty bullets are left out."""
    merged: dict[str, ParsedCitations] = {}
    for bullet in parsed:
        if not bullet.text:
            continue
        key = bullet_key(bullet.text)
        first = merged.get(key)
        merged[key] = (
            bullet
            if first is None
            else ParsedCitations(
                first.text,
                list(dict.fromkeys([*first.cited, *bullet.cited])),
                list(dict.fromkeys([*first.invalid, *bullet.invalid])),
            )
        )
    return list(merged.values())


def parse_citations(text: str, n_highlights: int) -> tuple[str, list[int]]:
    """The text without its [i] markers, and the 0-based highlight indices it cites (valid ones, in order)."""
    parsed = parse_bullet_citations(text, n_highlights)
    return parsed.text, parsed.cited


def most_similar(texts: list[str], highlights: list[Highlight], embedder: Embedder | None) -> list[int]:
    """For each text, the index of the most similar highlight."""
    if not highlights:
        return []
    if embedder is not None:
        vectors = embedder.encode(texts + [h.text for h in highlights])
        sims = vectors[: len(texts)] @ vectors[len(texts) :].T
        return [int(i) for i in np.argmax(sims, axis=1)]
    words = [set(tokenize(h.text)) for h in highlights]
    out = []
    for text in texts:
        mine = set(tokenize(text))
        overlaps = [len(mine & w) / (len(w) or 1) for w in words]
        out.append(int(np.argmax(overlaps)))
    return out


def bullets_from_text(text: str, context: SummaryContext) -> list[Bullet]:
    """Parse a generated summary into cited bullets (repeats merged, fallback citation by similarity)."""
    return _bullets_and_invalid(text, context)[0]


def cited_bullets_from_text(text: str, context: SummaryContext) -> Iterator[SummaryEvent]:
    """`bullets_from_text`'s bullets, after a notice when some cited numbers that name no key sentence: those
    citations are removed (a bullet left citing nothing is attached to the most similar key sentence), and
    the reader is told, as the local model's digests tell it."""
    bullets, invalid = _bullets_and_invalid(text, context)
    if invalid:
        yield invalid_citations_notice(invalid)
    yield bullets


def invalid_citations_notice(bullets: int) -> Notice:
    """What the reader is told when `bullets` bullets cited sentence numbers that do not exist."""
    return Notice(
        f"{bullets} bullet(s) cited sentence numbers that do not exist; those citations were removed"
    )


def _bullets_and_invalid(text: str, context: SummaryContext) -> tuple[list[Bullet], int]:
    """The cited bullets of a generated summary, and how many of them cited numbers naming no highlight."""
    bullets = (parse_bullet_citations(b, len(context.highlights)) for b in split_bullets(text, 1000))
    kept = merge_parsed_repeats(bullets)[: context.max_bullets]
    parsed = [(b.text, b.cited) for b in kept]
    uncited = [i for i, (_, c) in enumerate(parsed) if not c]
    if uncited and context.highlights:
        nearest = most_similar([parsed[i][0] for i in uncited], context.highlights, context.embedder)
        for i, h in zip(uncited, nearest, strict=True):
            parsed[i] = (parsed[i][0], [h])
    invalid = sum(1 for b in kept if b.invalid)
    return [Bullet(text=t, citations=[context.highlights[i].id for i in c]) for t, c in parsed], invalid


def refuse_unknown_params(summarizer: str, params: Mapping[str, Any], known: Iterable[str]) -> None:
    """A parameter the summarizer does not take is an error naming it, not ignored: `-p max_new_token=10`
    (a typo) changed nothing and said nothing."""
    known = set(known)
    if unknown := sorted(set(params) - known):
        raise ConfigError(
            f"the {summarizer} summarizer has no parameter {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(known))}"
        )


def refuse_boolean(summarizer: str, key: str, value: Any) -> None:
    """A boolean given for a numeric parameter is an error naming it: `int(True)` is 1, so
    `-p max_chars=true` (or `"max_chars": true` to the API) cut every bullet to one character."""
    if isinstance(value, bool):
        raise ConfigError(
            f"bad {summarizer} summarizer parameter {key}={value!r}: expected a number, got the boolean "
            f"{str(value).lower()}"
        )


def refuse_fraction(summarizer: str, key: str, value: Any) -> None:
    """A fraction given for a whole-number parameter is an error naming it: `int(2.5)` is 2, so
    `"max_chars": 2.5` cut bullets to 2 characters and `"num_beams": 1.5` decoded greedily, without a word
    (two_stage's top_up refused one already)."""
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"bad {summarizer} summarizer parameter {key}={value!r}: expected a whole number")
