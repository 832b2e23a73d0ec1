"""Summarizer registry: name -> builder(params) -> Summarizer. Add one by adding a module and a line here.

- `two_stage` (default): a cheap `draft` (extractive) shown at once, then a `final` one (the local LM by
  default) writes the cited bullets; extractive with a notice when no model is installed.
- `extractive`: the top highlights as bullets, no model.
- `local`: a local model (any model reference): a causal chat LM writing cited bullets, or a seq2seq one.
- `openai`: any OpenAI-compatible chat endpoint; base URL and key from the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tldrlab.choices import unknown_choice
from tldrlab.digest.summarizers import extractive, local, openai, two_stage
from tldrlab.digest.summarizers.base import Bullet, Summarizer, SummaryContext, SummaryEvent
from tldrlab.errors import InvalidInputError

SUMMARIZERS: dict[str, Callable[[dict[str, Any]], Summarizer]] = {
    "extractive": extractive.build,
    "local": local.build,
    "openai": openai.build,
    "two_stage": lambda params: two_stage.build(params, build_summarizer),
}


def build_summarizer(name: str, params: dict[str, Any] | None = None) -> Summarizer:
    if name not in SUMMARIZERS:
        raise InvalidInputError(unknown_choice("summarizer", name, SUMMARIZERS))
    return SUMMARIZERS[name](dict(params or {}))


__all__ = ["SUMMARIZERS", "Bullet", "Summarizer", "SummaryContext", "SummaryEvent", "build_summarizer"]
