"""A config's reader `format` is checked when the config is, against the formats the readers have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from cliutil import run_captured
from tldrlab.data.readers import READERS
from tldrlab.elm.config import ElmPrepareConfig
from tldrlab.evaluate.config import EvaluateConfig
from tldrlab.experiments.config import ExperimentConfig
from tldrlab.kinds import config_errors
from tldrlab.lvm.config import IngestConfig
from tldrlab.runs import open_registry
from tldrlab.train.config import TrainJobConfig


def test_a_registered_reader_is_a_format_every_config_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    # the configs read the registry's names (once a copied list a test had to keep equal to it)
    monkeypatch.setitem(READERS, "rss", READERS["text"])
    assert TrainJobConfig.model_validate({"data": {"path": "x", "format": "rss"}}).data.format == "rss"
    assert IngestConfig.model_validate({"path": "x", "format": "rss"}).format == "rss"
    monkeypatch.delitem(READERS, "rss")
    with pytest.raises(ValidationError, match=f"unknown format 'rss'; choose one of {', '.join(READERS)}"):
        EvaluateConfig.model_validate({"model_run": "r", "format": "rss"})


@pytest.mark.parametrize(
    ("config_class", "raw", "loc"),
    [
        (TrainJobConfig, {"data": {"path": "x", "format": "csvv"}}, ["data", "format"]),
        (EvaluateConfig, {"model_run": "r", "format": "csvv"}, ["format"]),
        (ExperimentConfig, {"data": "x", "format": "csvv"}, ["format"]),
        (ElmPrepareConfig, {"data": "x", "out": "y", "format": "csvv"}, ["format"]),
        (IngestConfig, {"path": "x", "format": "csvv"}, ["format"]),  # lvm ingest: a failed run before
    ],
)
def test_an_unknown_format_is_refused_by_the_config(
    config_class: type[BaseModel], raw: dict[str, Any], loc: list[str]
) -> None:
    with pytest.raises(ValidationError) as refused:
        config_class.model_validate(raw)
    assert [e["loc"] for e in config_errors(refused.value)] == [loc]
    assert "unknown format 'csvv'; choose one of pairs" in str(refused.value)
    known = (
        {**raw, "format": "text"} if loc == ["format"] else {**raw, "data": {"path": "x", "format": "text"}}
    )
    config_class.model_validate(known)  # a known format is accepted


def test_train_with_an_unknown_format_leaves_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # it was refused once the run had started (reading the data): a failed train run was left behind
    corpus = tmp_path / "c.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 50)
    code, _, err = run_captured(
        ["train", "--model", "char_lstm", "--data", str(corpus), "--format", "bogus", "--tokenizer-method",
         "char", "--vocab-size", "50", "--max-steps", "1"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "unknown format 'bogus'" in err
    assert open_registry().list(kind="train") == []


def test_a_compressed_file_is_named_for_what_it_is(tmp_path: Path) -> None:
    """pairs.jsonl.gz (or a directory of such files) was 'not UTF-8 text and not a known format' ('no data
    files to detect a format from; pass a format' for the directory): neither said it is compressed, and
    passing a format did not help."""
    import bz2
    import gzip

    from tldrlab.data.readers import detect_format
    from tldrlab.errors import InvalidInputError

    body = b'{"document": "A text.", "summary": "text"}\n'
    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / "pairs.train.jsonl.gz").write_bytes(gzip.compress(body))
    (tmp_path / "pairs.jsonl.bz2").write_bytes(bz2.compress(body))
    with pytest.raises(InvalidInputError, match=r"a gzip-compressed file: .* decompress it first \(gunzip\)"):
        detect_format(packed / "pairs.train.jsonl.gz")
    with pytest.raises(InvalidInputError, match=r"a bzip2-compressed file"):
        detect_format(tmp_path / "pairs.jsonl.bz2")
    with pytest.raises(InvalidInputError, match=r"its data files are compressed \(pairs.train.jsonl.gz\)"):
        detect_format(packed)
