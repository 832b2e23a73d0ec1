"""Fixtures for the digest tests: the real MiniLM embedder, real stores, a tiny T5 and a tiny chat LM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from digest_helpers import tiny_chat_lm, tiny_t5

from tldrlab.embed.base import Embedder
from tldrlab.store.base import SentenceStore


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tldrlab.embed import get_embedder

    return get_embedder("minilm")


@pytest.fixture
def store(tldrlab_home: Path, embedder: Embedder) -> Iterator[SentenceStore]:
    """The default embedded store (SQLite + FAISS) in this test's home."""
    from tldrlab.store import open_store

    opened = open_store(dim=embedder.dim, embedder=embedder.name)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_t5(tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="session")
def tiny_chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Llama chat model directory (ChatML template)."""
    return tiny_chat_lm(tmp_path_factory.mktemp("tiny_chat"))
