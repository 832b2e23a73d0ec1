"""The summarizer contract: every entry of SUMMARIZERS streams (text, and optionally a draft and notices),
then returns bullets citing the highlights.

A new summarizer gets a line in SETTINGS (the parameters that make it run here, on real components); the
test fails for an entry without one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from digest_helpers import FakeChat, fake_openai_server, sample_thread

from tldrlab.digest.highlights import HighlightOptions, thread_highlights
from tldrlab.digest.ingest import ingest_threads
from tldrlab.digest.summarizers import SUMMARIZERS, Bullet, SummaryContext, build_summarizer
from tldrlab.digest.summarizers.base import Draft, Notice
from tldrlab.embed.base import Embedder
from tldrlab.store.base import SentenceStore


@contextmanager
def _openai() -> Iterator[dict[str, Any]]:
    with fake_openai_server(FakeChat()) as base_url:
        yield {"base_url": base_url, "model": "tiny-chat"}


@contextmanager
def _fixed(params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield params


SETTINGS: dict[str, Callable[[Path], Any]] = {
    "extractive": lambda t5: _fixed({}),
    "local": lambda t5: _fixed({"model_path": str(t5), "max_new_tokens": 12}),
    "openai": lambda t5: _openai(),
    "two_stage": lambda t5: _fixed({"draft": "extractive", "final": "extractive"}),
}
"""Summarizer -> (tiny T5 directory) -> context manager yielding the parameters it runs with here."""


@pytest.mark.parametrize("name", list(SUMMARIZERS))
def test_summarizer_returns_cited_bullets(
    name: str, store: SentenceStore, embedder: Embedder, tiny_t5_dir: Path
) -> None:
    assert name in SETTINGS, f"summarizer {name!r} has no contract settings: add them to SETTINGS"
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    highlights = thread_highlights(store, thread.id, HighlightOptions(k=5), embedder=embedder)
    context = SummaryContext(thread=thread, highlights=highlights, embedder=embedder, max_bullets=3)
    bullets: list[Bullet] = []
    with ExitStack() as stack:
        params = stack.enter_context(SETTINGS[name](tiny_t5_dir))
        for event in build_summarizer(name, params).stream(context):
            assert isinstance(event, str | list | Draft | Notice)
            if isinstance(event, list):
                bullets = event
    assert bullets and all(b.text.strip() for b in bullets)
    cited = {c for b in bullets for c in b.citations}
    assert cited and cited <= {h.id for h in highlights}
