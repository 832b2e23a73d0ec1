"""`inspect_path` statistics on every shared data folder, checked against independent counts."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.data.inspect import inspect_path, length_stats


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_length_stats() -> None:
    values = list(range(1, 101))
    stats = length_stats(values)
    assert stats["count"] == 100 and stats["mean"] == 50.5 and stats["median"] == statistics.median(values)
    assert stats["max"] == 100 and 95 <= stats["p95"] <= 96
    assert length_stats([])["count"] == 0


def test_inspect_beer_threads(shared_data: Path) -> None:
    stats = inspect_path(shared_data / "stackexchange_beer")
    total = stats["total"]
    assert (stats["format"], stats["kind"]) == ("stackexchange", "threads")
    assert total["threads"] == 663 and total["threads_with_accepted_answer"] == 410
    assert total["answers"] == 1572 and total["posts"] == 663 + 1572 and total["comments"] == 0
    assert total["reader_counts"]["rows"] == 2354
    assert total["posts_per_thread"]["max"] >= total["posts_per_thread"]["median"] >= 1


@pytest.mark.parametrize(
    ("folder", "files", "fmt"),
    [
        ("scitldr", ["scitldr_a.dev.jsonl", "scitldr_a.train.jsonl"], "scitldr"),
        (
            "debian_descriptions",
            ["debian_descriptions.train.jsonl", "debian_descriptions.validation.jsonl"],
            "debian",
        ),
        ("wikipedia", ["enwiki_2016_sample.jsonl"], "wikipedia"),
    ],
)
def test_inspect_record_folders_per_split(shared_data: Path, folder: str, files: list[str], fmt: str) -> None:
    stats = inspect_path(shared_data / folder)
    assert stats["format"] == fmt
    raw = {name: _lines(shared_data / folder / name) for name in files}
    sections = stats.get("splits", {files[0]: stats["total"]})
    for name, rows in raw.items():
        assert sections[name]["records"] == len(rows)
    assert stats["total"]["records"] == sum(len(rows) for rows in raw.values())
    words = [len(r.get("text", r.get("document", "")).split()) for rows in raw.values() for r in rows]
    if fmt == "scitldr":
        words = [len(" ".join(r["source"]).split()) for rows in raw.values() for r in rows]
    assert stats["total"]["document_words"]["max"] == max(words)
    assert stats["total"]["document_words"]["median"] == statistics.median(words)


# untraced (`no_cover`): reading every QMSum meeting under coverage's tracing took ~2x as long, and the
# other tests of tests/data and tests/cli cover the same lines (the same term-missing report without it)
@pytest.mark.no_cover
def test_inspect_qmsum_and_text(shared_data: Path) -> None:
    stats = inspect_path(shared_data / "qmsum", split="val")
    assert stats["total"]["reader_counts"]["meetings"] == 35
    assert inspect_path(shared_data / "qmsum")["total"]["reader_counts"]["meetings"] == 162 + 35
    text = inspect_path(shared_data / "tinyshakespeare")
    words = len((shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").split())
    assert text["total"]["records"] == 1 and text["total"]["document_words"]["max"] == words


def test_inspect_detects_json_lines_whose_first_record_is_longer_than_the_detection_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One long document first (~4 MB on one line, longer than the prefix detection used to read), then a
    # short one: detection must read the first record whole, not give up on "no JSON object found".
    path = tmp_path / "long_first.jsonl"
    long_document = "word " * 800_000
    rows = [
        {"document": long_document, "summary": "a long one"},
        {"document": "short text here", "summary": "short"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert path.stat().st_size > 4_000_000
    code, out, err = run_captured(["data", "inspect", str(path), "--json"], capsys)
    assert code == 0, err
    stats = json.loads(out)
    assert stats["format"] == "pairs"
    assert stats["total"]["records"] == 2
    assert stats["total"]["document_words"]["max"] == 800_000


def test_a_field_mapping_reads_as_pairs_and_is_refused_by_another_format(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--map was ignored unless the format was pairs: without a format, detection refused the file whose
    fields need the mapping, saying to give one; with another format (or one detected), it read as if the
    mapping had not been given."""
    data = tmp_path / "odd.jsonl"
    data.write_text(json.dumps({"body_text": "one two three", "tl": "one"}) + "\n", encoding="utf-8")
    mapped = ["--map", "document=body_text", "--map", "summary=tl", "--json"]
    code, out, err = run_captured(["data", "inspect", str(data), *mapped], capsys)
    stats = json.loads(out)
    assert code == 0 and stats["format"] == "pairs" and stats["total"]["with_summary"] == 1, err
    assert stats["total"]["document_words"]["max"] == 3
    scitldr = str(shared_data / "scitldr")
    code, _, err = run_captured(
        ["data", "inspect", scitldr, "-f", "scitldr", "--map", "document=text"], capsys
    )
    assert code == 2 and "format 'scitldr' takes no field mapping (--map): only pairs maps fields" in err, err
    code, _, err = run_captured(["data", "inspect", scitldr, "--map", "document=text"], capsys)
    assert code == 2 and "field 'text': missing" in err, err  # read as pairs, as the mapping says


@pytest.mark.parametrize("fmt", ["pairs", "stackexchange", "text"])
def test_inspecting_a_path_that_is_not_there_with_a_format_says_so(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a format named nothing checked the path first: an os_error (exit 1), or "no Posts.xml in this
    directory" of a directory that does not exist, where without a format it is not_found (exit 3)."""
    missing = tmp_path / "nothere"
    code, _, err = run_captured(["data", "inspect", str(missing), "-f", fmt], capsys)
    assert code == 3 and f"error [not_found] {missing}: no such file or directory" in " ".join(err.split())
