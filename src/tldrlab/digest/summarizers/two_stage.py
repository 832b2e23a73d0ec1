"""The seed's two-stage mode: a cheap summarizer streams a draft at once, a consolidation summarizer
(a bigger local model or a chat endpoint) produces the final cited bullets from the thread and the draft.

The reader sees text within milliseconds (the draft) and gets the better bullets when they are ready.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tldrlab.digest.summarizers.base import Bullet, Summarizer, SummaryContext, SummaryEvent
from tldrlab.errors import ConfigError

SummarizerBuilder = Callable[[str, dict[str, Any]], Summarizer]


@dataclass
class TwoStageSummarizer:
    draft: Summarizer
    final: Summarizer
    name: str = "two_stage"

    def cache_params(self) -> dict[str, Any]:
        return {
            "draft": [self.draft.name, self.draft.cache_params()],
            "final": [self.final.name, self.final.cache_params()],
        }

    def stream(self, context: SummaryContext) -> Iterator[SummaryEvent]:
        pieces: list[str] = []
        draft_bullets: list[Bullet] = []
        for event in self.draft.stream(context):
            if isinstance(event, str):
                pieces.append(event)
                yield event
            else:
                draft_bullets = event
        if context.stop.is_set():
            return
        draft = "".join(pieces).strip()
        consolidate = getattr(self.final, "stream_text", None)
        if consolidate is not None:  # chat endpoints take the draft in the prompt
            from tldrlab.digest.summarizers.base import bullets_from_text

            text = "".join(consolidate(context, draft))
            if context.stop.is_set():
                return
            yield bullets_from_text(text, context) or draft_bullets
            return
        final_bullets: list[Bullet] = []
        for event in self.final.stream(context):  # a local model re-reads the folded thread
            if not isinstance(event, str):
                final_bullets = event
        if not context.stop.is_set():
            yield final_bullets or draft_bullets


def build(params: dict[str, Any], build_summarizer: SummarizerBuilder) -> TwoStageSummarizer:
    """The two stages, each built by `build_summarizer` (the registry's: passed in, not imported)."""
    draft_name = str(params.get("draft", "extractive"))
    final_name = str(params.get("final", "openai"))
    if "two_stage" in (draft_name, final_name):
        raise ConfigError("two_stage cannot nest itself")
    return TwoStageSummarizer(
        draft=build_summarizer(draft_name, dict(params.get("draft_params") or {})),
        final=build_summarizer(final_name, dict(params.get("final_params") or params)),
    )
