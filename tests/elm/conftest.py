"""Shared ELM fixtures: a tiny prepared data set from real Debian descriptions (real MiniLM embeddings)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
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


def built_once_per_session(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """`<session tmp>/<name>`, built by `build(directory)` once per test session, also under xdist: the
    workers of one `pytest -n N` run share its base temporary directory, the first one there builds (under
    a file lock) and the others read what it built instead of building the same thing again. Tests only
    read it (the fixtures below are session-scoped: shared by every test of a worker already)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    root = tmp_path_factory.getbasetemp()
    if worker is not None:
        root = root.parent  # `<pytest-N>/popen-gwK` -> `<pytest-N>`: this run's, shared by its workers
    directory, done = root / name, root / f"{name}.done"
    with (root / f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)  # a build that failed half-way
            directory.mkdir(parents=True)
            build(directory)
            done.touch()
    return directory


@pytest.fixture(scope="session")
def elm_data(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """48 train / 8 val / 8 test records of debian_descriptions in the ELM layout (real MiniLM embeddings)."""
    from tldrlab.elm.prepare import prepare_dataset

    def build(directory: Path) -> None:
        prepare_dataset(
            shared_data / "debian_descriptions", directory / "data", limit=48, eval_limit=8, progress=False
        )

    return built_once_per_session(tmp_path_factory, "elm", build) / "data"


@pytest.fixture(scope="session")
def elm_tokenizer(tmp_path_factory: pytest.TempPathFactory, elm_data: Path) -> Path:
    """A small BPE trained on the training targets and documents."""
    import json

    from tldrlab.tokenizers import train_tokenizer

    def build(directory: Path) -> None:
        corpus = directory / "corpus.txt"
        lines = (elm_data / "synthesis" / "train_synthesis.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines]
        texts = (r["target_text"] + "\n" + r["document"].replace("\n", " ") for r in rows)
        corpus.write_text("\n".join(texts))
        train_tokenizer("bpe", [corpus], 400, directory / "tok")

    return built_once_per_session(tmp_path_factory, "elm_tok", build) / "tok"
