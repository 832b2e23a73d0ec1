"""How a data-set directory's splits are told from its file names (`tldrlab.data.splits`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.data import splits
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
@pytest.mark.parametrize("train_name", ["train", "data"])
def test_an_experiment_never_trains_on_a_directory_s_test_file(
    tmp_path: Path, experiment: str, train_name: str
) -> None:
    """A directory of train.jsonl + test.jsonl and no dev file was read whole (with `--eval-data` too), then
    shuffled and cut: both experiments trained their arms on the test records; so they did with data.jsonl
    + test.jsonl (no file named train) after that. They train on the train file, else on the file named for
    no split (eval held out of it when no `--eval-data`); test = the test file (`splits.experiment_records`).
    """
    from tldrlab.experiments.config import ExperimentConfig, LMExperimentConfig
    from tldrlab.experiments.dendrite_experiment import load_data
    from tldrlab.experiments.lm_experiment import load_lm_data

    data = tmp_path / "data"
    for split, count in ((train_name, 20), ("test", 6)):
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

    assert len(with_eval.train) == 20
    assert all(r.document.startswith(f"{train_name}-") for r in with_eval.train)
    assert [r.document[:5] for r in with_eval.eval + with_eval.test] == ["held-"] * 7


def test_a_directory_naming_only_its_held_out_files_trains_on_the_others(tmp_path: Path) -> None:
    """data.jsonl + test.jsonl, or summaries.csv + dev.csv + test.csv: no file is named train, so the
    directory had no splits and everything that read it (training, its tokenizer, evaluation's holdout) read
    the test and dev files as training data. The files named for no split are the training split; dev
    validates."""
    data = tmp_path / "data"
    _pairs(data / "data.jsonl", 5, prefix="data-")
    _pairs(data / "test.jsonl", 3, prefix="test-")
    assert detect_splits(data) == ("train", None)
    assert training_files(data) == [data / "data.jsonl"]
    assert [r.document[:5] for r in read_records(data, split="train")] == ["data-"] * 5
    assert splits.test_split(data) == "test"

    csv = tmp_path / "csv"
    csv.mkdir()
    for name, count in (("summaries", 4), ("dev", 2), ("test", 3)):
        rows = "".join(f"{name} document {i},{name} summary {i}\n" for i in range(count))
        (csv / f"{name}.csv").write_text("document,summary\n" + rows, encoding="utf-8")
    assert detect_splits(csv) == ("train", "dev")
    assert training_files(csv) == [csv / "summaries.csv"]
    assert {r.document.split()[0] for r in read_records(csv, split="train")} == {"summaries"}
    assert {r.document.split()[0] for r in read_records(csv, split="dev")} == {"dev"}

    # with no name holding a split, a directory has none (read whole); an explicit train split is refused
    plain = tmp_path / "plain"
    _pairs(plain / "data.jsonl", 2)
    assert detect_splits(plain) == (None, None)
    with pytest.raises(TldrlabError, match=r"no file for split 'train' \(files: data.jsonl\)$"):
        read_records(plain, split="train")


def test_training_on_a_directory_of_held_out_files_only_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dev.jsonl + test.jsonl (or one validation file) and nothing else: `tldrlab train` trained on the test
    and dev records, read whole. It is refused before a run exists, in one line saying why and what to do."""
    from tldrlab.runs import open_registry

    data = tmp_path / "held"
    _pairs(data / "dev.jsonl", 4)
    _pairs(data / "test.jsonl", 4)
    argv = ["train", "--model", "char_lstm", "--data", str(data), "--max-steps", "1", "--wandb", "disabled"]
    code, _, err = run_captured(argv, capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "no file for split 'train' (files: dev.jsonl, test.jsonl): every file here is a test or " in err
    assert "or give a file itself as the data" in err
    assert open_registry().list() == []


def test_tldrlab_train_never_reads_the_test_file_of_a_directory_without_a_train_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab train --data DIR` on data.jsonl + test.jsonl recorded no splits, trained its tokenizer and its
    model on both files and held out a fraction of the mixture,
    which evaluation then read back. The run trains on data.jsonl only; evaluation holds out of it too."""
    from tldrlab.evaluate.run_eval import eval_config_for
    from tldrlab.runs import open_registry
    from tldrlab.tokenizers import load_tokenizer
    from tldrlab.train.jobs import parse_job_config
    from tldrlab.train.tasks import build_task

    data = tmp_path / "data"
    _pairs(data / "data.jsonl", 12, prefix="data-")
    _pairs(data / "test.jsonl", 6, prefix="test-")
    argv = ["train", "--model", "char_lstm", "--data", str(data), "--tokenizer-method", "char",
            "--model-settings", "hidden_dim=8", "--model-settings", "embedding_dim=8", "--max-steps", "1",
            "--batch-size", "1", "--block-size", "8", "--final-eval.no-enabled", "--train.no-plot",
            "--wandb", "disabled", "-q"]  # fmt: skip
    code, _, err = run_captured(argv, capsys)
    assert code == 0, err
    (record,) = open_registry().list(kind="train")
    assert record.config["data"]["train_split"] == "train"
    tokenizer = Path(record.run_dir) / "tokenizer" / "tokenizer_manifest.json"
    manifest = json.loads(tokenizer.read_text(encoding="utf-8"))
    assert [c["path"] for c in manifest["corpus"]] == [str(data / "data.jsonl")]
    job = parse_job_config(record.config)
    task = build_task(job, load_tokenizer(tokenizer.parent), object(), "causal_lm")  # type: ignore[arg-type]
    ids = [i for block in task.train_blocks + task.val_blocks for i in block]
    read = load_tokenizer(tokenizer.parent).decode(ids)
    assert "data-" in read and "test-" not in read  # trained and validated on data.jsonl only
    config, _, _ = eval_config_for(record.id)
    assert (config.split, config.val_fraction) == ("train", job.data.val_fraction)


def test_lm_compress_calibrates_on_the_training_split_of_a_directory(tmp_path: Path) -> None:
    """`experiment compress --calibration-data DIR` read the directory whole, in file-name order: with
    train.jsonl + test.jsonl its calibration records (which rank the units the cut keeps) were the test
    records. It reads the training split (`splits.detect_splits`), as for training."""
    from tldrlab.experiments.lm_experiment import calibration_records

    data = tmp_path / "data"
    for split in ("train", "test"):
        _pairs(data / f"{split}.jsonl", 6, prefix=f"{split}-")
    assert [r.document[:6] for r in calibration_records(str(data), 4)] == ["train-"] * 4
    single = data / "test.jsonl"  # a file is the data it was named as
    assert [r.document[:5] for r in calibration_records(str(single), 2)] == ["test-"] * 2
