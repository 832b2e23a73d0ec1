"""`tldrlab elm prepare`: the ELM data layout from real pairs, and the task filter with its index remap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cliutil import run_cli
from tldrlab.elm.prepare import SPLITS, filter_task, load_split, read_manifest, write_split
from tldrlab.errors import InvalidInputError


def test_prepare_writes_layout_with_embeddings_of_the_documents(elm_data: Path, shared_data: Path) -> None:
    from tldrlab.elm.compare import check_reusable
    from tldrlab.elm.config import ElmT5CompareConfig
    from tldrlab.embed import get_embedder

    for split in SPLITS:
        assert (elm_data / "synthesis" / f"{split}_synthesis.jsonl").is_file()
        assert (elm_data / "embeddings" / f"{split}_embeddings.safetensors").is_file()
    train = load_split(elm_data, "train")
    assert len(train.records) == 48 and tuple(train.embeddings.shape) == (48, 384)
    first = train.records[0]
    assert first["task_type"] == "summary" and "{text}" in first["input_prompt_template"]
    assert first["target_text"] and first["embedding_index"] == 0
    # The stored row is MiniLM's embedding of that record's document.
    direct = get_embedder("minilm").encode([first["document"]])[0]
    assert float(np.dot(direct, train.embeddings[0].numpy())) > 0.999
    manifest = read_manifest(elm_data)
    assert manifest["embedding_dim"] == 384 and manifest["splits"]["val"]["records"] == 8
    # what decides its records, which `elm compare` checks before it reuses a layout in its --out
    source = shared_data / "debian_descriptions"
    assert (manifest["source"], manifest["seed"]) == (str(source), 0)
    assert (manifest["limit"], manifest["eval_limit"]) == (48, 8)
    check_reusable(ElmT5CompareConfig(data=str(source), limit=48, eval_limit=8), manifest)
    # val and test are disjoint halves of the data's validation split
    val_ids = {r["source_id"] for r in load_split(elm_data, "val").records}
    test_ids = {r["source_id"] for r in load_split(elm_data, "test").records}
    assert val_ids and test_ids and not val_ids & test_ids


def build_multitask(source: Path, out: Path) -> dict[str, list[dict[str, Any]]]:
    """A real multi-task set: every document has a `summary` record; some also a `package_name` record,
    and some documents only the `package_name` task (their rows must disappear when filtering)."""
    written: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        base = load_split(source, split)
        records: list[dict[str, Any]] = []
        for r in base.records:
            i = int(r["embedding_index"])
            name = {**r, "task_type": "package_name", "target_text": r["source_id"], "variation": 1}
            if i % 3 == 0:  # this document has only the other task
                records.append(name)
                continue
            records.append(name) if i % 2 else None
            records.append(r)
        write_split(out, split, records, base.embeddings)
        written[split] = records
    return written


def test_filter_keeps_one_task_and_remaps_indices(elm_data: Path, tmp_path: Path) -> None:
    multi = tmp_path / "multi"
    written = build_multitask(elm_data, multi)
    out = tmp_path / "summary_only"
    stats = filter_task(multi, out, task="summary")

    for split in SPLITS:
        original = load_split(multi, split)
        filtered = load_split(out, split)
        expected = [r for r in written[split] if r["task_type"] == "summary"]
        assert [r["target_text"] for r in filtered.records] == [r["target_text"] for r in expected]
        assert {r["task_type"] for r in filtered.records} == {"summary"}
        # dense new numbering: only rows used by summary records, in the old order
        used = sorted({int(r["embedding_index"]) for r in expected})
        assert filtered.embeddings.shape[0] == len(used) < original.embeddings.shape[0]
        assert sorted({r["embedding_index"] for r in filtered.records}) == list(range(len(used)))
        for r in filtered.records:
            old = r["original_embedding_index"]
            assert torch.equal(filtered.embeddings[r["embedding_index"]], original.embeddings[old])
        assert stats[split]["records"] == len(expected)
        assert stats[split]["task_types"] == {"summary": len(expected)}


def test_prepare_cli_filters_a_multitask_directory(
    elm_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    multi = tmp_path / "multi"
    build_multitask(elm_data, multi)
    code = run_cli(
        ["elm", "prepare", "--data", str(multi), "--task", "package_name", "--out", str(tmp_path / "names")]
    )
    assert code == 0
    shown = capsys.readouterr().out
    assert "train" in shown and "package_name" in shown
    names = load_split(tmp_path / "names", "train")
    assert names.records and all(r["target_text"] == r["source_id"] for r in names.records)


def test_bad_inputs_get_clear_errors(
    elm_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    base = load_split(elm_data, "train")
    write_split(broken, "train", [{**base.records[0], "embedding_index": 999}], base.embeddings)
    with pytest.raises(InvalidInputError, match="embedding_index 999 is out of range"):
        load_split(broken, "train")
    code = run_cli(["elm", "prepare", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert code != 0 and "not found" in capsys.readouterr().err
    valid = tmp_path / "valid"
    write_split(valid, "train", base.records[:3], base.embeddings)
    code = run_cli(
        ["elm", "prepare", "--data", str(valid), "--task", "nothing", "--out", str(tmp_path / "o2")]
    )
    assert code != 0 and "no records with task_type 'nothing'" in capsys.readouterr().err
    # refused before anything is written: an empty layout left in `out` was taken for prepared data by
    # `elm train`, and the same prepare with the right task refused `out` as holding a layout
    assert not (tmp_path / "o2").exists()
    assert run_cli(["elm", "prepare", "--data", str(valid), "--out", str(tmp_path / "o2")]) == 0
    # a multi-task directory is never filtered onto itself
    with pytest.raises(InvalidInputError):
        filter_task(broken, broken)
    assert json.loads((broken / "synthesis" / "train_synthesis.jsonl").read_text())["embedding_index"] == 999


def test_a_template_without_its_text_and_an_output_file_are_clear_errors(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tldrlab.runs import open_registry

    data = shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"
    # the template was refused once the run had read the data: a failed run stayed behind
    args = ["elm", "prepare", "--data", str(data), "--limit", "4"]
    assert run_cli([*args, "--out", str(tmp_path / "o"), "--template", "no placeholder"]) == 2
    assert "template: the prompt template must contain {text}" in capsys.readouterr().err
    assert open_registry().list(kind="elm_prepare") == []
    # an output path that is a file: a NotADirectoryError traceback once the first split was embedded, then
    # a refusal inside the run, which stayed behind as a failed run
    (tmp_path / "file").write_text("x")
    assert run_cli([*args, "--out", str(tmp_path / "file")]) == 2
    assert "out: " + str(tmp_path / "file") + " is a file: give a directory" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "x"
    assert open_registry().list(kind="elm_prepare") == []


def test_prepare_refuses_an_out_holding_a_prepared_layout_unless_told_to_overwrite(
    elm_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`elm prepare --out DIR` silently replaced the layout a DIR already held (a training run resumed on it
    found its data changed, but the layout was gone). It is refused before a run exists, with exit 4 and one
    line, unless `--overwrite` says to replace it."""
    from tldrlab.runs import open_registry

    multi = tmp_path / "multi"
    build_multitask(elm_data, multi)
    out = tmp_path / "prepared"
    argv = ["elm", "prepare", "--data", str(multi), "--out", str(out)]
    assert run_cli([*argv, "--task", "summary"]) == 0
    capsys.readouterr()
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    code = run_cli([*argv, "--task", "package_name"])
    err = capsys.readouterr().err
    assert code == 4 and err.startswith("error [conflict] ") and "--overwrite" in err, (code, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in sorted(p for p in out.rglob("*") if p.is_file())} == before
    assert len(open_registry().list(kind="elm_prepare")) == 1
    # asked for explicitly, the layout is replaced; a new, empty directory needs no flag
    assert run_cli([*argv, "--task", "package_name", "--overwrite"]) == 0
    assert {r["task_type"] for r in load_split(out, "train").records} == {"package_name"}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(["elm", "prepare", "--data", str(multi), "--out", str(empty)]) == 0


@pytest.mark.parametrize("train_name", ["train", "data"])
def test_train_and_test_files_without_a_dev_file_never_put_test_records_in_train(
    tmp_path: Path, train_name: str
) -> None:
    """A directory of train.jsonl + test.jsonl and no dev file was read whole and cut into seeded fractions:
    test records landed in the ELM's train (and val) split; so they did with data.jsonl + test.jsonl (no file
    named train) after that. Train and val come from the train file (else the file named for no split);
    test is the test file."""
    from tldrlab.elm.prepare import _split_records

    data = tmp_path / "data"
    data.mkdir()
    for split, count in ((train_name, 20), ("test", 5)):
        lines = [
            {"document": f"{split}-{i} a document about package {i}", "summary": f"{split}-{i} a summary"}
            for i in range(count)
        ]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    splits = _split_records(data, None, limit=None, seed=0, val_fraction=0.1, test_fraction=0.1)

    assert not [r.document for r in splits["train"] + splits["val"] if r.document.startswith("test-")]
    assert (len(splits["train"]), len(splits["val"])) == (18, 2)
    assert sorted(r.document[:6] for r in splits["test"]) == [f"test-{i}" for i in range(5)]


def test_quiet_prepare_draws_no_embedding_bar(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab -q elm prepare` ("no progress bars") still drew its "embedding train/val/test" bars: they read
    the config's `progress` only (which the command's own `--quiet` sets), not the console's setting that
    every other tldrlab bar reads."""
    data = shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"
    args = ["elm", "prepare", "--data", str(data), "--limit", "6"]
    assert run_cli([*args, "--out", str(tmp_path / "shown")]) == 0
    assert "embedding train" in capsys.readouterr().err  # the bar draws on a console that shows bars
    for quiet in (["-q", *args], [*args, "--quiet"]):
        assert run_cli([*quiet, "--out", str(tmp_path / f"quiet{len(quiet[0])}")]) == 0
        assert "embedding" not in capsys.readouterr().err, quiet


def test_an_empty_data_file_is_refused_before_a_run_exists(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`elm prepare --data empty.jsonl` (format detected, or named) was refused once the run read the file,
    leaving a failed run behind (and POST /runs accepted it): both front ends refuse it before a
    run exists."""
    from fastapi.testclient import TestClient

    from cliutil import run_captured
    from tldrlab.runs import open_registry
    from tldrlab.service.app import create_app

    data = tldrlab_home / "data"  # inside the API's data root
    data.mkdir(parents=True)
    (data / "empty.jsonl").write_bytes(b"")
    for named in ([], ["--format", "pairs"]):
        argv = ["elm", "prepare", "--data", str(data / "empty.jsonl"), "--out", str(data / "o"), *named]
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and err.strip() == f"error [invalid_input] {data / 'empty.jsonl'}: file is empty"
    assert open_registry().list() == []
    refused = TestClient(create_app()).post(
        "/runs", json={"kind": "elm_prepare", "config": {"data": "empty.jsonl", "out": "o"}}
    )
    assert refused.status_code == 422 and "file is empty" in refused.json()["message"], refused.text
    assert open_registry().list() == []


def test_a_split_with_no_usable_records_is_refused_before_any_split_is_embedded(tmp_path: Path) -> None:
    """A validation file whose documents are all blank was refused only after the training split had been
    embedded and written: `out` was left a half layout (train only), which `elm compare` then reused. It is
    now refused before the embedder runs, and `out` is not created."""
    from tldrlab.elm.prepare import prepare_dataset

    data, out = tmp_path / "pairs", tmp_path / "out"
    data.mkdir()
    pair = {"document": "a small library for parsing", "summary": "a parsing library"}
    (data / "train.jsonl").write_text(json.dumps(pair) + "\n")
    (data / "validation.jsonl").write_text(json.dumps({**pair, "document": " "}) + "\n")
    with pytest.raises(InvalidInputError, match=f"^{data}: no val records with a document and a summary$"):
        prepare_dataset(data, out, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("count", [1, 2])
def test_too_few_records_to_hold_out_val_and_test_say_so(tmp_path: Path, count: int) -> None:
    """One or two good records of data without splits all went to val and test, and the refusal said "no
    train records with a document and a summary", which the file contradicted."""
    from tldrlab.elm.prepare import prepare_dataset

    data = tmp_path / "pairs.jsonl"
    pairs = [
        {"document": f"a small library for parsing {i}", "summary": "a parsing library"} for i in range(count)
    ]
    data.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    records = "1 record" if count == 1 else "2 records"
    expected = (
        f"{data}: {records}, too few to hold out a validation record and a test record and train on the rest"
    )
    with pytest.raises(InvalidInputError, match=f"^{expected}: give at least 3$"):
        prepare_dataset(data, tmp_path / "out", progress=False)
