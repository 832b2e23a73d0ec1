"""The default summarizer: no model, bullets are the top highlights themselves, each citing itself.

Only highlights that carry an answer become bullets (`candidates.is_bullet_worthy`: not the question of a
thread that has answers, not a question, not a lead-in); the next-ranked highlights fill their places.
Bullets keep the thread's reading order (post number, then sentence) so the TL;DR reads like the thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tldrlab.digest.candidates import is_bullet_worthy
from tldrlab.digest.highlights import Highlight
from tldrlab.digest.summarizers.base import (
    Bullet,
    Notice,
    SummaryContext,
    SummaryEvent,
    refuse_boolean,
    refuse_fraction,
    refuse_unknown_params,
)
from tldrlab.errors import ConfigError


@dataclass
class ExtractiveSummarizer:
    name: str = "extractive"
    max_chars: int = 300
    """Bullets longer than this are cut at a word boundary (the citation still links the full sentence)."""

    def cache_params(self) -> dict[str, Any]:
        return {"max_chars": self.max_chars}

    def stream(self, context: SummaryContext) -> Iterator[SummaryEvent]:
        top = bullet_highlights(context)[: context.max_bullets]
        if context.highlights and not top:
            # said here: the pipeline's guess for an empty digest blamed an untrained model's empty output
            yield Notice(NO_BULLET_WORTHY, explains_empty=True)
        ordered = sorted(top, key=lambda h: (h.post_number, h.sentence_index))
        bullets = []
        for highlight in ordered:
            if context.stop.is_set():
                return
            text = shorten(highlight.text, self.max_chars)
            bullets.append(Bullet(text=text, citations=[highlight.id]))
            yield f"- {text}\n"
        yield bullets


NO_BULLET_WORTHY = (
    "none of the key sentences can be a bullet, so there are no bullets: each is a question, a sentence of "
    "the thread's question or a lead-in, and a TL;DR answers rather than asks"
)
"""Why an extractive digest of a thread with highlights has no bullets."""


def bullet_highlights(context: SummaryContext) -> list[Highlight]:
    """The highlights, in rank order, that may be bullets."""
    kinds = {p.id: p.kind for p in context.thread.posts}
    has_answers = "answer" in kinds.values()
    return [
        h for h in context.highlights if is_bullet_worthy(h.text, kinds.get(h.post_id, "post"), has_answers)
    ]


def shorten(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    at_space = cut.rsplit(" ", 1)[0]
    # a word cut in half beats a cut at the last space that keeps almost nothing ("See" of "See <a URL> ...")
    return (at_space if len(at_space) >= max_chars // 2 else cut).rstrip(",;:") + "…"


def build(params: dict[str, Any]) -> ExtractiveSummarizer:
    refuse_unknown_params("extractive", params, ("max_chars",))
    value = params.get("max_chars", 300)
    refuse_boolean("extractive", "max_chars", value)
    refuse_fraction("extractive", "max_chars", value)
    try:
        max_chars = int(value)
    # a clear 400 / exit 2, not an internal error (OverflowError: JSON's Infinity, or 1e400)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"bad extractive summarizer parameter max_chars={value!r}: {exc}") from exc
    if max_chars < 1:
        raise ConfigError(f"max_chars must be a whole number >= 1, got {value!r}")
    return ExtractiveSummarizer(max_chars=max_chars)
