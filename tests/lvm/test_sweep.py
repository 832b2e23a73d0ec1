"""`program: tldrlab.lvm`: a sweep whose trials are real `lvm_train` runs, pruned inside the training loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lvm_synthetic import rotating_table
from optuna.trial import TrialState

from tldrlab.errors import ConfigError, InvalidInputError
from tldrlab.kinds import validate_config
from tldrlab.lvm.sequences import build_sequences
from tldrlab.runs import open_registry
from tldrlab.runs.atomic import read_jsonl
from tldrlab.runs.run import read_manifest
from tldrlab.sweep.runner import run_sweep
from tldrlab.sweep.spec import load_sweep
from tldrlab.sweep.storage import load_study


def _sweep(tmp_path: Path, sequences: Path, **config: object) -> Path:
    path = tmp_path / "lvm.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "lvm-gru",
                "program": "tldrlab.lvm",
                "method": "grid",
                "seed": 1,  # grid order: lr 0.01 first, then 1e-7 (pruned against it)
                "metric": {"name": "eval_loss", "goal": "minimize"},
                "early_terminate": {"type": "median", "min_iter": 1, "n_startup_trials": 1},
                "parameters": {"train.lr": {"values": [0.01, 1.0e-7]}},
                "config": {
                    "sequences": str(sequences),
                    "model": "gru",
                    "model_settings": {"hidden": 16, "layers": 1, "dropout": 0.0},
                    "loss": "mse",
                    "train": {
                        "max_steps": 40,
                        "warmup_steps": 0,  # LVM's default warm-up (50 steps) is longer than these trials
                        "eval_every": 10,
                        "batch_size": 16,
                        "device": "cpu",
                        "plot": False,
                    },
                    **config,
                },
            }
        )
    )
    return path


def test_lvm_sweep_prunes_a_hopeless_learning_rate(tmp_path: Path) -> None:
    sequences = build_sequences(rotating_table(n_articles=10, length=20, dim=8), context=3, seed=0).save(
        tmp_path / "seq.npz"
    )
    path = _sweep(tmp_path, sequences)
    summary = run_sweep(load_sweep(path), quiet=True, echo=lambda line: None)
    trials = load_study("lvm-gru", None).get_trials()
    assert [(t.params["train.lr"], t.state) for t in trials] == [
        (0.01, TrialState.COMPLETE),
        (1e-7, TrialState.PRUNED),
    ]
    assert summary["trials"] == {"COMPLETE": 1, "PRUNED": 1}
    registry = open_registry()
    for t in trials:
        record = registry.get(t.user_attrs["run_id"])
        manifest = read_manifest(record.run_dir)
        assert record.kind == "lvm_train" and manifest["tags"] == {"study": "lvm-gru", "trial": t.number}
        assert manifest["parent_id"] == summary["run_id"]
        assert manifest["config"]["train"]["best_metric"] == "eval_loss"  # the kept model follows the metric
        # the config `tldrlab lvm train` builds from the same base + parameters: LVM's loop defaults kept
        raw = yaml.safe_load(path.read_text())["config"]
        raw["train"] |= {"lr": t.params["train.lr"], "best_metric": "eval_loss", "best_mode": "min"}
        raw["train"]["progress"] = False  # what a quiet sweep sets
        assert manifest["config"] == validate_config("lvm_train", raw).model_dump(mode="json")
        assert manifest["config"]["train"]["log_every"] == 25  # LVM's, where TrainConfig's own is 10
        evaluations = [r for r in read_jsonl(Path(record.run_dir) / "metrics.jsonl") if "eval_loss" in r]
        if t.state == TrialState.COMPLETE:
            assert t.value == pytest.approx(evaluations[-1]["eval_loss"])
            assert (Path(record.run_dir) / "model" / "lvm_model.json").is_file()
        else:
            assert max(r["step"] for r in evaluations) < 20 and manifest["metrics"]["pruned"] is True


def test_lvm_sweep_config_is_checked_before_any_trial(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"config\.sequences: not found"):
        run_sweep(load_sweep(_sweep(tmp_path, tmp_path / "missing.npz")), quiet=True, echo=lambda line: None)
    sequences = build_sequences(rotating_table(n_articles=5, length=8, dim=4), context=2).save(
        tmp_path / "s.npz"
    )
    with pytest.raises(ConfigError, match="unknown LVM 'rnn'"):
        run_sweep(load_sweep(_sweep(tmp_path, sequences, model="rnn")), quiet=True, echo=lambda line: None)
    assert open_registry().list(kind="lvm_train") == []


def test_a_train_section_shorter_than_lvms_warm_up_is_refused_before_any_trial(tmp_path: Path) -> None:
    """`train: {max_steps: 40}` keeps LVM's 50 warm-up steps, as `tldrlab lvm train --train.max-steps 40`:
    refused when the sweep starts, naming the field to set, not trial by trial."""
    sequences = build_sequences(rotating_table(n_articles=5, length=8, dim=4), context=2).save(
        tmp_path / "s.npz"
    )
    path = _sweep(tmp_path, sequences)
    raw = yaml.safe_load(path.read_text())
    del raw["config"]["train"]["warmup_steps"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ConfigError, match=r"train\.warmup_steps: 50 warm-up steps exceed max_steps \(40\): set"
    ):
        run_sweep(load_sweep(path), quiet=True, echo=lambda line: None)
    assert open_registry().list(kind="lvm_train") == []
