"""Fixtures of the LVM tests: a tiny causal chat LM (real transformers Llama, random weights) on disk."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama, hidden size 32 (4 heads, 2 KV heads, rotary positions), with a ChatML tokenizer,
    saved as a model directory (tests/tinylm.py)."""
    from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama

    tokenizer = tiny_chat_tokenizer()
    return save_tiny_model(tiny_llama(tokenizer), tokenizer, tmp_path_factory.mktemp("tiny-llama"))
