"""A training that names no tokenizer trains its model family's: char_lstm a character vocabulary (it trained
the generic 8000-token BPE one), the others BPE as before; whatever the user sets wins, and the recorded
config names what was trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.runs import open_registry
from tldrlab.runs.run import read_manifest
from tldrlab.service.app import create_app
from tldrlab.sweep.spec import parse_sweep
from tldrlab.sweep.trials import share_tokenizer


def _printed_tokenizer(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code, out, err = run_captured([*argv, "--print-config"], capsys)
    assert code == 0, err
    return dict(yaml.safe_load(out)["tokenizer"])


def test_char_lstm_trains_a_character_tokenizer_unless_told_otherwise(
    tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. Whether tis nobler in the mind.\n" * 40)
    base = ["train", "--data", str(text)]
    char = {"path": None, "method": "char", "vocab_size": 100}
    assert _printed_tokenizer([*base, "--model", "char_lstm"], capsys) == char
    assert _printed_tokenizer([*base, "--model", "t5"], capsys)["method"] == "bpe"
    assert _printed_tokenizer(base, capsys) == {"path": None, "method": "bpe", "vocab_size": 8000}
    # the user's choice wins, from a flag or a config file, even when it is the generic default
    chosen = _printed_tokenizer([*base, "--model", "char_lstm", "--tokenizer-method", "bpe"], capsys)
    assert chosen == {"path": None, "method": "bpe", "vocab_size": 8000}
    assert (
        _printed_tokenizer([*base, "--model", "char_lstm", "--vocab-size", "300"], capsys)["method"] == "bpe"
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": "char_lstm", "tokenizer": {"method": "bpe"}}))
    assert _printed_tokenizer([*base, "--config", str(config)], capsys)["method"] == "bpe"

    # a real two-step training: it trains a character tokenizer and its manifest says so (what --resume reads)
    argv = [*base, "--model", "char_lstm", "--train.max-steps", "2", "--train.batch-size", "2"]
    code, _, err = run_captured([*argv, "--final-eval.no-enabled", "--wandb", "disabled", "--quiet"], capsys)
    assert code == 0, err
    record = open_registry().list(kind="train")[0]
    assert record.config["tokenizer"] == char
    assert read_manifest(record.run_dir)["config"]["tokenizer"] == char
    logged = (Path(record.run_dir) / "log.jsonl").read_text(encoding="utf-8")
    assert "training a char tokenizer (vocab 100)" in logged, logged[-2000:]

    # the API records the same resolved config as the command line
    data = tldrlab_home / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "text.txt").write_text(text.read_text())
    client = TestClient(create_app())
    submitted = client.post(
        "/runs/train", json={"config": {"model": "char_lstm", "data": {"path": "text.txt"}}}
    )
    assert submitted.status_code == 202, submitted.text
    shown = client.get(f"/runs/{submitted.json()['id']}").json()["config"]
    assert shown["tokenizer"] == char, json.dumps(shown)


def test_a_pretrained_t5_or_gpt2_trains_on_with_its_own_tokenizer(
    tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`from_pretrained` continues a checkpoint with the tokenizer its embeddings were trained on (a new
    8000-token BPE vocabulary was trained, so every id named another token), and refuses a checkpoint of
    another family (a t5 loaded a char_lstm run's directory and failed in its first step with a traceback)."""
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. Whether tis nobler in the mind.\n" * 40)
    quick = ["--data", str(text), "--max-steps", "1", "--batch-size", "2", "--block-size", "16"]
    quick += ["--final-eval.no-enabled", "--wandb", "disabled", "--quiet"]
    gpt2 = '{"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32}'
    code, _, err = run_captured(
        ["train", "--model", "gpt2", "--model-config", gpt2, "--vocab-size", "300", *quick], capsys
    )
    assert code == 0, err
    first = open_registry().list(kind="train")[0]
    pretrained = json.dumps({"from_pretrained": first.id})
    code, _, err = run_captured(["train", "--model", "gpt2", "--model-config", pretrained, *quick], capsys)
    assert code == 0, err
    second = open_registry().list(kind="train")[0]
    assert second.id != first.id
    logged = (Path(second.run_dir) / "log.jsonl").read_text(encoding="utf-8")
    assert "tokenizer (vocab" not in logged and not (Path(second.run_dir) / "tokenizer").exists(), logged
    vocab = json.loads((Path(first.run_dir) / "model" / "tokenizer.json").read_text())["model"]["vocab"]
    saved = json.loads((Path(second.run_dir) / "model" / "tokenizer.json").read_text())["model"]["vocab"]
    assert saved == vocab

    # a sweep over such a training shares no tokenizer trained anew either (its trials read that one's path)
    sweep = parse_sweep(
        {
            "program": "tldrlab.train",
            "method": "grid",
            "metric": {"name": "eval_loss", "goal": "minimize"},
            "parameters": {"train.lr": {"values": [0.001, 0.01]}},
            "config": {
                "model": "gpt2",
                "model_settings": {"from_pretrained": first.id},
                "data": {"path": str(text)},
            },
        }
    )
    assert share_tokenizer(sweep, "pretrained") is None and "path" not in sweep.config.get("tokenizer", {})
    # nor over a causal_lm (its trials loaded the shared BPE tokenizer's path before SmolLM2's own)
    sweep.config = {"model": "causal_lm", "data": {"path": str(text)}}
    assert share_tokenizer(sweep, "chat") is None and "tokenizer" not in sweep.config

    # a checkpoint of another family is refused in one line, naming both
    code, out, err = run_captured(["train", "--model", "t5", "--model-config", pretrained, *quick], capsys)
    assert code == 2 and "Traceback" not in out + err, err
    assert "holds a gpt2 model, not a t5 model" in err and len(err.strip().splitlines()) == 1, err
    # refused before a run was created (it was refused only once the run started, and stayed a failed run),
    # on the command line and at the API's submit alike
    assert [r.id for r in open_registry().list(kind="train")] == [second.id, first.id]
    (tldrlab_home / "data").mkdir(parents=True, exist_ok=True)
    (tldrlab_home / "data" / "text.txt").write_text(text.read_text())
    config = {"model": "t5", "model_settings": {"from_pretrained": first.id}, "data": {"path": "text.txt"}}
    refused = TestClient(create_app()).post("/runs/train", json={"config": config})
    error = refused.json()
    assert refused.status_code == 422 and error["code"] == "invalid_config" and error["request_id"], error
    assert "holds a gpt2 model, not a t5 model" in error["message"], error
    assert len(open_registry().list(kind="train")) == 2
