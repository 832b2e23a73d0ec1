"""Evaluation artifacts: eval_summary.json, the per-example table and, with highlight labels, the per-sentence
highlight table, recorded as run artifacts and logged to W&B (offline) as an `evaluation` artifact."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from tinylm import model_run, save_tiny_model, tiny_t5
from tldrlab.evaluate.artifacts import auc, highlight_metrics, highlight_rows
from tldrlab.launch import launch_run
from tldrlab.runs.datasets import register_dataset
from tldrlab.runs.run import read_manifest


def test_highlight_coverage_and_auc() -> None:
    from tldrlab.data.records import SummaryRecord

    record = SummaryRecord(
        id="p1",
        document="",
        sentences=["The parser reads XML documents.", "We thank the reviewers.", "Results are good."],
        highlight_labels=[1, 0, 0],
    )
    rows = highlight_rows([record], ["an XML parser that reads documents"])
    assert [(r["sentence"], r["label"], r["coverage"]) for r in rows] == [
        (0, 1, 1.0),
        (1, 0, 0.0),
        (2, 0, 0.0),
    ]
    metrics = highlight_metrics(rows)
    assert metrics["highlight_auc"] == 1.0 and metrics["highlight_coverage_labelled"] == 1.0
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auc([0.5, 0.5], [0, 1]) == 0.5 and auc([1.0], [1]) is None
    unlabelled = SummaryRecord(id="x", document="text", sentences=["text"])
    assert highlight_rows([unlabelled], ["text"]) == []


def _wandb_records(path: Path) -> list[Any]:
    """The records of a W&B transaction log (`run-*.wandb`: LevelDB-style blocks of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data, position, records, pending = path.read_bytes(), 7, [], b""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        position += 7
        if kind == 0:  # padding to the end of the block
            position += left - 7
            continue
        chunk, position = data[position : position + length], position + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk if kind == 4 else chunk)
            records.append(record)
            pending = b""
        else:
            pending += chunk
    return records


@pytest.mark.slow
def test_evaluation_writes_tables_and_logs_an_evaluation_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        {
            "paper_id": f"paper{i}",
            "source": [
                "This package provides a small library.",
                "The daemon watches a directory.",
                "Thanks.",
            ],
            "source_labels": [0, 1, 0],
            "target": ["a library for reading configuration files"],
        }
        for i in range(3)
    ]
    data = tmp_path / "scitldr.dev.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset, _ = register_dataset(data)
    t5, tokenizer = tiny_t5()
    trained = model_run(lambda d: save_tiny_model(t5, tokenizer, d), config={"data": {"path": str(data)}})
    monkeypatch.setenv("WANDB_MODE", "offline")
    launched = launch_run(
        "evaluate",
        {"model_run": trained.id, "bertscore": False, "generation": {"max_new_tokens": 5, "temperature": 0}},
    )
    assert launched.record.status.value == "completed", launched.record.message
    run_dir = Path(launched.record.run_dir)
    # the evaluation run, and the evaluated run's directory (a later evaluation than its final one)
    for directory in (run_dir, Path(trained.run_dir) / "evaluations" / launched.record.id):
        summary = json.loads((directory / "eval_summary.json").read_text())
        assert summary["evaluated_run"] == trained.id and summary["run_id"] == launched.record.id
        assert summary["datasets"][0]["id"] == dataset.id and summary["task"] == "seq2seq"
        assert summary["metrics"]["examples"] == 3 and 0.0 <= summary["metrics"]["highlight_auc"] <= 1.0
        assert summary["files"] == ["eval_table.csv", "highlight_eval_table.csv"]
        with (directory / "eval_table.csv").open() as handle:
            table = list(csv.DictReader(handle))
        assert [r["id"] for r in table] == ["paper0", "paper1", "paper2"] and "prediction" in table[0]
        with (directory / "highlight_eval_table.csv").open() as handle:
            sentences = list(csv.DictReader(handle))
        assert len(sentences) == 9 and [r["label"] for r in sentences[:3]] == ["0", "1", "0"]
    artifacts = {a["path"]: a["kind"] for a in read_manifest(run_dir)["artifacts"]}
    assert artifacts["eval_summary.json"] == "eval" and artifacts["highlight_eval_table.csv"] == "table"

    logs = list(run_dir.glob("wandb/**/run-*.wandb"))
    assert len(logs) == 1
    logged = [r.artifact for r in _wandb_records(logs[0]) if r.WhichOneof("record_type") == "artifact"]
    assert [(a.type, a.name) for a in logged] == [("evaluation", f"evaluation-{launched.record.id}")]
    files = {entry.path for entry in logged[0].manifest.contents}
    assert {"eval_summary.json", "eval_table.csv", "highlight_eval_table.csv", "eval.png"} <= files


def test_final_evaluations_stay_small_for_short_runs() -> None:
    from tldrlab.evaluate.config import FinalEvalConfig

    final = FinalEvalConfig()
    assert [final.samples_for(steps) for steps in (2, 40, 100, 5_000)] == [4, 4, 10, 64]
    assert FinalEvalConfig(max_samples=2).samples_for(100) == 2
