"""Any UTF-8 file that is not a known structured format is plain text, whatever its name (wiki.test.raw)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.data.readers import detect_format, read_records
from tldrlab.data.splits import detect_splits
from tldrlab.errors import InvalidInputError
from tldrlab.runs import open_registry


@pytest.fixture
def wikitext(tmp_path: Path, shared_data: Path) -> Path:
    """A slice of WikiText-103 validation under the name the WikiText archives use."""
    source = shared_data / "wikitext_valid" / "wiki.valid.tokens"
    path = tmp_path / "wiki.test.raw"
    path.write_text(source.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    return path


def test_utf8_files_of_any_name_are_text(wikitext: Path, tmp_path: Path) -> None:
    assert detect_format(wikitext) == "text"
    (record,) = read_records(wikitext)
    assert "= Homarus gammarus =" in record.document and len(record.document) == 30_000
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    (corpus_dir / "wiki.train.raw").write_text("one\n", encoding="utf-8")
    (corpus_dir / "wiki.valid.raw").write_text("two\n", encoding="utf-8")
    assert detect_format(corpus_dir) == "text"  # a directory holding only text files of other names
    assert [r.id for r in read_records(corpus_dir, split="validation")] == ["wiki.valid"]

    no_suffix = tmp_path / "CORPUS"
    no_suffix.write_text("héllo wörld\n", encoding="utf-8")
    assert detect_format(no_suffix) == "text"
    looks_like_json = tmp_path / "notes.log"
    looks_like_json.write_text('{"level": "info"}\nplain words\n', encoding="utf-8")
    assert detect_format(looks_like_json) == "text"  # a JSON line of no known format is still text
    pairs = tmp_path / "pairs.data"
    pairs.write_text(json.dumps({"document": "d", "summary": "s"}) + "\n", encoding="utf-8")
    assert detect_format(pairs) == "pairs"  # a known JSON format keeps its reader whatever the name


def test_binary_and_misnamed_json_files_are_still_refused(tmp_path: Path) -> None:
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\x00\x01\x02abc")
    with pytest.raises(InvalidInputError, match="not UTF-8 text"):
        detect_format(binary)
    latin1 = tmp_path / "old.raw"
    latin1.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(InvalidInputError, match="not UTF-8 text"):
        detect_format(latin1)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("this is not json\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="cannot detect the format"):
        detect_format(broken)


def test_tokenizer_and_lm_training_read_a_raw_text_file(
    wikitext: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_captured(
        ["tokenizer", "train", "--method", "bpe", "--vocab-size", "300", str(wikitext)], capsys
    )
    assert code == 0, err
    (tokenizer_run,) = open_registry().list(kind="tokenizer")
    tokenizer_dir = Path(tokenizer_run.run_dir) / "tokenizer"
    manifest = json.loads((tokenizer_dir / "tokenizer_manifest.json").read_text())
    assert manifest["corpus"][0]["format"] == "text"

    code, _, err = run_captured(
        [
            "train",
            "--model",
            "char_lstm",
            "--data",
            str(wikitext),
            "--tokenizer",
            str(tokenizer_dir),
            "--model-config",
            '{"embedding_dim": 8, "hidden_dim": 16, "num_layers": 1}',
            "--block-size",
            "32",
            "--batch-size",
            "4",
            "--max-steps",
            "2",
            "--eval-every",
            "2",
            "--wandb",
            "disabled",
        ],
        capsys,
    )
    assert code == 0, err
    (train_run,) = open_registry().list(kind="train")
    assert train_run.status.value == "completed"


def test_per_paragraph_takes_true_or_false_and_refuses_anything_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--option per_paragraph=maybe` (or a typo such as `=ture`) read the file as one record without a word
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph here.\n\nSecond one.\n", encoding="utf-8")
    for value, count in [("true", 2), ("Yes", 2), ("1", 2), ("false", 1), ("OFF", 1), ("0", 1)]:
        assert len(list(read_records(path, "text", options={"per_paragraph": value}))) == count, value
    assert len(list(read_records(path, "text", options={"per_paragraph": True}))) == 2
    with pytest.raises(InvalidInputError, match="option per_paragraph is true or false, not 'ture'"):
        list(read_records(path, "text", options={"per_paragraph": "ture"}))
    code, _, err = run_captured(["data", "inspect", str(path), "--option", "per_paragraph=maybe"], capsys)
    assert code == 2 and "option per_paragraph is true or false, not 'maybe'" in err, err


def test_a_licence_beside_the_data_files_does_not_make_the_directory_text(tmp_path: Path) -> None:
    """LICENSE.txt sorts before train.jsonl (capitals first) and decided the format: `text`, whose reader
    reads .txt and .md only, so the licence was the whole data set and the data files were left out."""
    data = tmp_path / "pairs"
    data.mkdir()
    (data / "LICENSE.txt").write_text("Licensed under CC-BY 4.0.\n", encoding="utf-8")
    for split, n in (("train", 3), ("dev", 1)):
        rows = [json.dumps({"document": f"{split} document {i}", "summary": f"s{i}"}) for i in range(n)]
        (data / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert detect_format(data) == "pairs"
    assert [r.document for r in read_records(data, split="train")] == [
        f"train document {i}" for i in range(3)
    ]
    assert detect_splits(data) == ("train", "dev")
    notes = tmp_path / "notes"  # text files beside a JSON file of no known format: still text
    notes.mkdir()
    (notes / "config.json").write_text('{"lang": "en"}', encoding="utf-8")
    (notes / "a.txt").write_text("some text\n", encoding="utf-8")
    assert detect_format(notes) == "text" and [r.id for r in read_records(notes)] == ["a"]
