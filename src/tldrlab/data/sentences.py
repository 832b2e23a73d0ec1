"""Sentence segmentation with character offsets (pysbd), so every sentence traces back to its exact text."""

from __future__ import annotations

import bisect
import functools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sentence:
    """A sentence of a text: `text == source[start:end]` always holds."""

    index: int
    start: int
    end: int
    text: str


REGEX_CACHE_SIZE = 4096
"""pysbd builds regular expressions from abbreviations as it meets them (about 5,000 distinct ones on a
forum dump), more than Python's compiled-pattern cache holds (512): it then recompiles them again and again,
which was most of its time. A larger cache made segmentation about a third faster (bench/digest_speed.py)."""

_per_thread = threading.local()


def _segmenter(language: str) -> Any:
    """This thread's pysbd segmenter: a Segmenter keeps the text it works on in itself, so two threads
    sharing one (two API requests ingesting at once) get each other's sentences, or none."""
    segmenters: dict[str, Any] = _per_thread.__dict__.setdefault("segmenters", {})
    if language not in segmenters:
        if isinstance(getattr(re, "_MAXCACHE", None), int):  # CPython's cache size (a private knob)
            re._MAXCACHE = max(re._MAXCACHE, REGEX_CACHE_SIZE)  # type: ignore[attr-defined]
        segmenters[language] = _segmenter_class()(language=language, clean=False, char_span=True)
    return segmenters[language]


@functools.cache
def _segmenter_class() -> Any:
    """pysbd's Segmenter with its character spans found by `_char_spans` (the same spans, faster)."""
    import pysbd
    from pysbd.utils import TextSpan

    class Segmenter(pysbd.Segmenter):  # type: ignore[misc]
        def sentences_with_char_spans(self, sentences: list[str]) -> list[Any]:
            return _char_spans(sentences, self.original_text, TextSpan)

    return Segmenter


def _char_spans(sentences: list[str], text: str, span: Any) -> list[Any]:
    r"""What pysbd's `Segmenter.sentences_with_char_spans` returns, without its regular expressions.

    pysbd compiles `re.escape(sentence) + r"\s*"` for every sentence and takes the first of its
    non-overlapping matches in the text that ends after the previous sentence's span. Each pattern is new
    (it holds the sentence): compiling them took a third of segmenting the beer dump (5.4 CPU-s, 3.7 without).
    A literal followed by `\s*` matches where `str.find` finds the literal, plus the whitespace after it
    (`\s` is `str.isspace` for str patterns), and the next match is searched from the end of this one: the
    loop below walks the same matches in the same order.
    """
    spans: list[Any] = []
    prior_end = 0
    # Where each sentence's walk stopped: the same sentence again ("+1", a repeated log line) resumes there,
    # as its earlier matches end before `prior_end` anyway. Each walked from the start of the text: a window
    # of 2,000 repeated lines took 2 million steps (20 s for 100 KB of "x\n", hours for a 20 MB post).
    resume: dict[str, int] = {}
    for sentence in sentences:
        if not sentence:  # the pattern is `\s*` alone, which also matches empty strings: pysbd's own way
            for match in re.finditer(r"\s*", text):
                if match.end() > prior_end:
                    spans.append(span(match.group(), match.start(), match.end()))
                    prior_end = match.end()
                    break
            continue
        at = resume[sentence] if sentence in resume else text.find(sentence)
        while at >= 0:
            end = at + len(sentence)
            while end < len(text) and text[end].isspace():
                end += 1
            if end > prior_end:
                spans.append(span(text[at:end], at, end))
                prior_end = end
                break
            at = text.find(sentence, end)
        resume[sentence] = at
    return spans


def split_sentences(text: str, language: str = "en") -> list[Sentence]:
    """Split `text` into sentences with exact character spans; whitespace around sentences is excluded.

    pysbd's own spans are re-anchored by searching forward in the text, because pysbd may normalise
    whitespace inside a span; paragraphs (blank lines) always end a sentence.
    """
    spans: list[tuple[int, int]] = []
    offset = 0
    for block_start, block in _paragraphs(text):
        if not block.strip():
            continue
        block_spans = len(spans)
        for sent, span_start, span_end in _segment(block, language):
            piece = sent.strip()
            if not piece:
                continue
            found = text.find(piece, max(offset, block_start))
            if found < 0:  # pysbd changed the characters; fall back to its own span
                found = block_start + span_start
                piece = text[found : block_start + span_end].strip()
                if not piece:
                    continue
                found = text.find(piece, found)
            spans.extend(_script_ends(found, found + len(piece), text))
            offset = found + len(piece)
        # pysbd leaves out punctuation after a block's last sentence ("Done.!!", "Hi there! ?!": no
        # sentence held the "!!" or "?!", and the sentences no longer covered the text): it belongs to
        # that sentence, as the same marks before a next sentence belong to one
        block_end = block_start + len(block.rstrip())
        if len(spans) > block_spans and spans[-1][1] < block_end:
            spans[-1] = (spans[-1][0], block_end)
    spans = _whole_urls(spans, text)
    return [
        Sentence(index=i, start=start, end=end, text=text[start:end]) for i, (start, end) in enumerate(spans)
    ]


URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
"""A link as written in a post: what `digest.candidates` takes for one too."""


def _whole_urls(spans: list[tuple[int, int]], text: str) -> list[tuple[int, int]]:
    """`spans` with each sentence that ends inside a link joined to the next: pysbd ends a sentence at the
    "?" of a query string, so "See http://www.youtube.com/watch?v=e1FH076U4Lk for it." was the sentence
    "See http://www.youtube.com/watch?" and the fragment "v=e1FH076U4Lk for it." (10 sentences of the beer
    dump): a highlight showed half a link, and the rest of it could be a highlight of its own."""
    links = [match.span() for match in URL.finditer(text)]  # in order, never overlapping
    if not links:
        return spans
    starts = [first for first, _ in links]

    def inside_a_link(at: int) -> bool:
        i = bisect.bisect_left(starts, at) - 1  # the last link starting before `at`
        return i >= 0 and at < links[i][1]

    joined: list[tuple[int, int]] = []
    for start, end in spans:
        # never past a window's length: a paste of links with query strings and no full stop was one
        # sentence of them all, where a run without an end of a sentence is cut at WINDOW_CHARS
        if joined and inside_a_link(joined[-1][1]) and end - joined[-1][0] <= WINDOW_CHARS:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return joined


WINDOW_CHARS = 4000
"""The longest text pysbd segments in one call. Its time grows with the square of a paragraph's length (its
abbreviation pass rescans the whole paragraph for each abbreviation it meets): one 100 KB paragraph took
22 s, so a long post (a request body may hold 20 MB) held an ingest for hours. A longer paragraph is
segmented a window at a time, each window starting where the last sentence of the one before started (that
sentence may go on past its window). The beer dump's longest paragraph is 2,208 characters."""


def _segment(block: str, language: str) -> Iterator[tuple[str, int, int]]:
    """pysbd's sentences of `block` (text, start, end; with the whitespace after each), in linear time: a
    block longer than WINDOW_CHARS is segmented a window at a time. A window holding no end of a sentence
    (a run of over WINDOW_CHARS characters without one) is cut at its last whitespace."""
    segmenter = _segmenter(language)
    at = 0
    while at < len(block):
        window = block[at : at + WINDOW_CHARS]
        spans = [s for s in segmenter.segment(window) if s.sent.strip()]
        if at + len(window) >= len(block):
            yield from ((s.sent, at + s.start, at + s.end) for s in spans)
            return
        if not spans:  # a window of whitespace
            at += len(window)
            continue
        if len(spans) > 1 and spans[-1].start > 0:  # all but the last, which starts the next window
            yield from ((s.sent, at + s.start, at + s.end) for s in spans[:-1])
            at += spans[-1].start
            continue
        cut = max(window.rfind(c) for c in (" ", "\t", "\n")) + 1 or len(window)
        yield window[:cut], at, at + cut
        at += cut


OTHER_SCRIPT_ENDS = re.compile(r"(?<=[\u061f\u06d4\u0964\u0965\u0589\u1362])\s+")
"""Sentence ends the English segmenter does not know, followed by a space: Arabic's question mark (؟), Urdu's
full stop (۔), the Devanagari danda and double danda (। ॥), Armenian's full stop (։) and Ethiopic's (።)."""


def _script_ends(start: int, end: int, text: str) -> list[tuple[int, int]]:
    """The spans of text[start:end] split after another script's sentence end (whitespace left out)."""
    spans, at = [], start
    for match in OTHER_SCRIPT_ENDS.finditer(text, start, end):
        spans.append((at, match.start()))
        at = match.end()
    spans.append((at, end))
    return spans


def _paragraphs(text: str) -> list[tuple[int, str]]:
    """Split on blank lines, keeping each block's start offset."""
    blocks, start = [], 0
    for match in re.finditer(r"\n\s*\n", text):
        blocks.append((start, text[start : match.start()]))
        start = match.end()
    blocks.append((start, text[start:]))
    return blocks
