"""How a data-set directory's splits are told from its file names (`tldrlab.data.splits`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tldrlab.data.inspect import inspect_path
from tldrlab.data.readers import read_records
from tldrlab.data.splits import detect_splits, training_files
from tldrlab.errors import TldrlabError


def _pairs(path: Path, n: int, prefix: str = "") -> None:
    """`n` pairs records; each document starts with `prefix` (to tell a split's records apart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"document": f"{prefix}{path.name} document {i}", "summary": f"summary {i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_splits_are_told_from_the_files_a_read_covers(tmp_path: Path) -> None:
    """A dev file in a subdirectory, a hidden editor file and a note named for validation made a directory
    with only a training file "split" (train, dev): the run then read split dev, which the read (the
    directory's own data files) does not have, and stopped with 'no file for split dev'."""
    data = tmp_path / "data"
    _pairs(data / "pairs.train.jsonl", 4)
    _pairs(data / "old" / "pairs.dev.jsonl", 2)
    _pairs(data / ".pairs.validation.jsonl", 2)
    (data / "validation-notes.txt").write_text("to do: write a dev set\n", encoding="utf-8")
    train, dev = detect_splits(data)
    assert (train, dev) == ("train", None)  # the run holds out its val_fraction of the train split
    assert len(read_records(data, split=train)) == 4
    assert training_files(data) == [data / "pairs.train.jsonl"]

    _pairs(data / "pairs.validation.jsonl", 2)  # a dev split the read covers: now it is split
    assert detect_splits(data) == ("train", "dev")
    assert len(read_records(data, split="dev")) == 2


def test_a_directory_of_split_subdirectories_says_they_are_not_read(tmp_path: Path) -> None:
    """data/train/x.jsonl and data/dev/x.jsonl: `data inspect data` said only 'the directory holds no data
    files', as if the data were gone."""
    data = tmp_path / "data"
    _pairs(data / "train" / "pairs.jsonl", 3)
    _pairs(data / "dev" / "pairs.jsonl", 2)
    below = r"not those of its subdirectories dev, train: name a subdirectory"
    with pytest.raises(TldrlabError, match=r"holds no data files \(only its own files are read, " + below):
        inspect_path(data)
    with pytest.raises(TldrlabError, match=r"no pairs data files .* here \(only its own files .*" + below):
        read_records(data, "pairs")
    assert len(read_records(data / "train")) == 3


def test_a_split_of_a_stack_exchange_dump_directory_is_refused_as_of_its_file(shared_data: Path) -> None:
    """`data inspect stackexchange_beer --split dev` read all 663 threads as the dev split, where the dump's
    Posts.xml named itself was refused ('no dev split in this single file')."""
    site = shared_data / "stackexchange_beer"
    for path in (site, site / "Posts.xml"):
        with pytest.raises(TldrlabError, match=r"no 'dev' split in this single file \(it has no splits\)"):
            inspect_path(path, split="dev")


@pytest.mark.parametrize("experiment", ["dendrites", "lm"])
def test_an_experiment_never_trains_on_a_directory_s_test_file(tmp_path: Path, experiment: str) -> None:
    """A directory of train.jsonl + test.jsonl and no dev file was read whole (with `--eval-data` too), then
    shuffled and cut: both experiments trained their arms on the test records. They train on the train file
    (eval held out of it when no `--eval-data`); test = the test file (`splits.experiment_records`)."""
    from tldrlab.experiments.config import ExperimentConfig, LMExperimentConfig
    from tldrlab.experiments.dendrite_experiment import load_data
    from tldrlab.experiments.lm_experiment import load_lm_data

    data = tmp_path / "data"
    for split, count in (("train", 20), ("test", 6)):
        _pairs(data / f"{split}.jsonl", count, prefix=f"{split}-")
    config_class, load = (
        (ExperimentConfig, load_data) if experiment == "dendrites" else (LMExperimentConfig, load_lm_data)
    )
    config = config_class(data=str(data), eval_size=4, test_size=3, batch_size=4, train_limit=32)

    loaded = load(config)

    assert not [r.document for r in loaded.train + loaded.eval if r.document.startswith("test-")]
    assert len(loaded.train) == 16 and len(loaded.eval) == 4
    assert len(loaded.test) == 3 and all(r.document.startswith("test-") for r in loaded.test)

    held = tmp_path / "held.jsonl"
    _pairs(held, 8, prefix="held-")
    with_eval = load(config.model_copy(update={"eval_data": str(held)}))

    assert len(with_eval.train) == 20 and all(r.document.startswith("train-") for r in with_eval.train)
    assert [r.document[:5] for r in with_eval.eval + with_eval.test] == ["held-"] * 7
