"""Shared ELM fixtures: a tiny prepared data set from real Debian descriptions (real MiniLM embeddings)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on a shared 2-core machine more threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def elm_data(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """48 train / 8 val / 8 test records of debian_descriptions in the ELM layout."""
    from tldrlab.elm.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("elm") / "data"
    prepare_dataset(shared_data / "debian_descriptions", out, limit=48, eval_limit=8, progress=False)
    return out


@pytest.fixture(scope="session")
def elm_tokenizer(tmp_path_factory: pytest.TempPathFactory, elm_data: Path) -> Path:
    """A small BPE trained on the training targets and documents."""
    import json

    from tldrlab.tokenizers import train_tokenizer

    directory = tmp_path_factory.mktemp("elm_tok")
    corpus = directory / "corpus.txt"
    lines = (elm_data / "synthesis" / "train_synthesis.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    corpus.write_text("\n".join(r["target_text"] + "\n" + r["document"].replace("\n", " ") for r in rows))
    train_tokenizer("bpe", [corpus], 400, directory / "tok")
    return directory / "tok"
