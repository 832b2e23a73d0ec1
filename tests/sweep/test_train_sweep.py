"""A sweep of real `tldrlab train` runs: a tiny char LSTM, pruned through the training loop's on_eval hook."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from optuna.trial import TrialState

from tldrlab.runs import open_registry
from tldrlab.runs.atomic import read_jsonl
from tldrlab.runs.run import read_manifest
from tldrlab.sweep.runner import run_sweep
from tldrlab.sweep.spec import load_sweep
from tldrlab.sweep.storage import load_study


@pytest.mark.slow
def test_train_sweep_prunes_bad_learning_rates_inside_the_loop(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()[:400]
    corpus = tmp_path / "shakespeare.txt"
    corpus.write_text("\n".join(text) + "\n", encoding="utf-8")
    sweep = tmp_path / "lstm.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "lstm",
                "program": "tldrlab.train",
                "method": "grid",
                "seed": 1,  # GridSampler order: lr 0.03 first, then 1e-7 (pruned against it)
                "metric": {"name": "eval_loss", "goal": "minimize"},
                "early_terminate": {"type": "median", "min_iter": 1, "n_startup_trials": 1},
                "parameters": {"train.lr": {"values": [0.03, 1.0e-7]}},
                "config": {
                    "model": "char_lstm",
                    "model_settings": {"embedding_dim": 16, "hidden_dim": 32, "num_layers": 1},
                    "data": {
                        "path": str(corpus),
                        "block_size": 32,
                        "val_fraction": 0.1,
                        "max_val_examples": 8,
                    },
                    "tokenizer": {"method": "char", "vocab_size": 100},
                    "train": {
                        "max_steps": 12,
                        "eval_every": 3,
                        "batch_size": 4,
                        "device": "cpu",
                        "log_every": 3,
                    },
                },
            }
        )
    )
    summary = run_sweep(load_sweep(sweep), quiet=True, echo=lambda line: None)
    study = load_study("lstm", None)
    trials = study.get_trials()
    states = [(t.params["train.lr"], t.state) for t in trials]
    assert states == [(0.03, TrialState.COMPLETE), (1e-7, TrialState.PRUNED)], states
    assert summary["trials"] == {"COMPLETE": 1, "PRUNED": 1}
    registry = open_registry()
    tokenizers = set()
    for t in trials:
        record = registry.get(t.user_attrs["run_id"])
        manifest = read_manifest(record.run_dir)
        assert record.kind == "train" and manifest["tags"] == {"study": "lstm", "trial": t.number}
        assert manifest["parent_id"] == summary["run_id"] and manifest["wandb_group"] == "lstm"
        assert (Path(record.run_dir) / "wandb").is_dir()
        tokenizers.add(manifest["config"]["tokenizer"]["path"])
        steps = max(r["step"] for r in read_jsonl(Path(record.run_dir) / "metrics.jsonl"))
        if t.state == TrialState.PRUNED:
            assert steps < 12 and t.params["train.lr"] < 1e-3 and manifest["metrics"]["pruned"] is True
        else:
            assert t.state == TrialState.COMPLETE and steps == 12
            assert (Path(record.run_dir) / "model" / "tldrlab_model.json").is_file()
            assert t.value == pytest.approx(manifest["metrics"]["final_eval_loss"])
    assert len(tokenizers) == 1  # one tokenizer trained for the whole sweep
    assert study.best_trial.params["train.lr"] == 0.03


def tiny_lstm_sweep(
    shared_data: Path, tmp_path: Path, parameters: dict[str, Any], train: dict[str, Any], **spec: Any
) -> Path:
    """A sweep file over a char-LSTM of 8 units on 200 lines of Tiny Shakespeare, trained with `train` (on
    top of batch 4 on the CPU) and sweeping `parameters`; `spec` adds to the sweep's own keys."""
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()[:200]
    corpus = tmp_path / "shakespeare.txt"
    corpus.write_text("\n".join(text) + "\n", encoding="utf-8")
    sweep = tmp_path / "lstm.yaml"
    config = {
        "model": "char_lstm",
        "model_settings": {"embedding_dim": 8, "hidden_dim": 8, "num_layers": 1},
        "data": {"path": str(corpus), "block_size": 16, "max_val_examples": 4},
        "tokenizer": {"method": "char", "vocab_size": 100},
        "train": {**train, "batch_size": 4, "device": "cpu"},
        "wandb": "disabled",
        "final_eval": {"enabled": False},
    }
    metric = {"name": "eval_loss", "goal": "minimize"}
    body = {"name": "lstm", "program": "tldrlab.train", "method": "random", "metric": metric, **spec}
    sweep.write_text(yaml.safe_dump({**body, "parameters": parameters, "config": config}))
    return sweep


@pytest.mark.slow
def test_a_trial_whose_drawn_config_is_invalid_fails_and_the_sweep_goes_on(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parameters valid one by one but not together (6 warm-up steps with 4 max_steps): the sweep's check
    validates one draw and the largest values, both valid; the trial that drew the pair ended the whole
    sweep with exit 2, its trial left RUNNING in the study, the trials after it never run."""
    from cliutil import run_captured

    parameters = {"train.warmup_steps": {"values": [0, 6]}, "train.max_steps": {"values": [6, 4]}}
    # seed 0: its second draw is 6 warm-up steps with 4 max_steps
    sweep = tiny_lstm_sweep(shared_data, tmp_path, parameters, {"eval_every": 2}, seed=0)
    code, _, err = run_captured(["sweep", "run", str(sweep), "--trials", "2", "--quiet"], capsys)
    assert code == 0, err
    assert "trial 1 FAIL" in err and "6 warm-up steps exceed max_steps (4)" in err, err
    states = [t.state for t in load_study("lstm", None).get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE], states


@pytest.mark.slow
def test_resuming_a_trial_run_its_sweep_has_failed_is_refused_and_the_run_kept(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trial run cancelled with `runs cancel` is told FAIL by its sweep, which asks another trial. `train
    --resume` of that run then ran it, and it failed at once on its study trial with
    `UpdateFinishedTrialError` and a traceback, the cancelled run recorded as failed (internal_error)."""
    import threading

    from cliutil import run_captured

    # seed 0 draws 3000 steps first (the trial cancelled while it trains), then 2: the trial asked in place
    # of the cancelled one trained all 3000 steps (~2/3 of this test's time)
    parameters = {"train.max_steps": {"values": [2, 3000]}}
    sweep = tiny_lstm_sweep(shared_data, tmp_path, parameters, {"eval_every": 2}, seed=0)
    registry = open_registry()

    def cancel_the_first_trial() -> None:  # `tldrlab runs cancel` from another terminal, once it trains
        while not (runs := registry.list(kind="train")) or runs[-1].status.value != "running":
            time.sleep(0.05)
        registry.request_cancel(runs[-1].id)

    canceller = threading.Thread(target=cancel_the_first_trial)
    canceller.start()
    code, _, err = run_captured(["sweep", "run", str(sweep), "--trials", "1", "--quiet"], capsys)
    canceller.join()
    assert code == 0 and "trial 0 FAIL" in err, err
    first = load_study("lstm", None).get_trials()[0]
    assert first.params["train.max_steps"] == 3000
    cancelled = registry.get(first.user_attrs["run_id"])
    assert cancelled.status.value == "cancelled"

    code, _, err = run_captured(["train", "--resume", cancelled.id, "--quiet"], capsys)
    assert code == 4 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "trial 0 of study 'lstm', which its sweep recorded as FAIL" in err, err
    assert registry.get(cancelled.id).status.value == "cancelled"  # left as it was
