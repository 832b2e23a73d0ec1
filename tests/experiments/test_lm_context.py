"""`tldrlab experiment lm` with a GPT-2 of short context (learned positions, `n_positions`): its chat examples
and test prompts are cut to fit the model's positions, and a config no prompt can fit is refused with the
field to change. The arm fine-tuned every example whole and generated from whole prompts: the run failed
with "IndexError: index out of range in self" ("run failed with an unexpected error")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from cliutil import run_captured
from tinylm import CORPUS, save_tiny_model, tiny_chat_tokenizer
from tldrlab.runs import RunStatus, open_registry
from tldrlab.service.app import create_app

TINY = "--arms baseline --seeds 1 --budget 2 --eval-every 2 --batch-size 4 --train-limit 8 --eval-size 2"
TINY += " --test-size 2 --no-bertscore --no-plots --wandb-mode disabled"


def _gpt2(directory: Path, positions: int) -> Path:
    import transformers

    tokenizer = tiny_chat_tokenizer()
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=positions, n_embd=16, n_layer=1, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return save_tiny_model(transformers.GPT2LMHeadModel(config), tokenizer, directory)


def test_a_short_context_gpt2_has_its_examples_cut_to_fit_or_its_config_refused(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tldrlab_home / "data"  # where API runs may read
    pairs = data / "pairs.jsonl"
    pairs.parent.mkdir(parents=True)
    # documents of ~36 tokens in a chat prompt of ~40 more (this tokenizer spells the instruction out in
    # pieces): every prompt is past 64 positions before it is cut
    lines = [
        {"document": f"{CORPUS[i % 10]} {CORPUS[(i * 3 + 1) % 10]}", "summary": CORPUS[(i + 4) % 10]}
        for i in range(16)
    ]
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    wide = _gpt2(data / "models" / "gpt2-64", 64)
    narrow = _gpt2(data / "models" / "gpt2-32", 32)
    capsys.readouterr()  # what saving the models printed
    experiment = ["experiment", "lm", "--data", str(pairs), *TINY.split()]

    # 64 positions: prompts cut to leave room for the answer (training) and for the tokens generated (test)
    fits = ["--max-target-tokens", "16", "--max-new-tokens", "8"]
    code, _, err = run_captured([*experiment, "--model", str(wide), *fits], capsys)
    assert code == 0, err
    (run,) = open_registry().list(kind="lm_experiment")
    assert run.status == RunStatus.COMPLETED, run.message
    (arm,) = open_registry().list(kind="lm_experiment_arm")
    samples = [json.loads(line) for line in (Path(arm.run_dir) / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(isinstance(s["prediction"], str) for s in samples), samples

    # 32 positions with the default answer of 32 tokens: no prompt fits beside it, refused before a run exists
    code, _, err = run_captured([*experiment, "--model", str(narrow)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "max_target_tokens: 32 tokens leave no room for the chat prompt" in err, err
    assert "model's 32 positions (n_positions)" in err, err
    assert len(open_registry().list()) == 2  # the first experiment and its arm: nothing new
    config = {"data": "pairs.jsonl", "model": "models/gpt2-32", "arms": ["baseline"]}
    response = TestClient(create_app()).post("/runs", json={"kind": "lm_experiment", "config": config})
    error = response.json()
    assert response.status_code == 422 and error["code"] == "invalid_config", response.text
    assert error["errors"][0]["loc"] == ["max_target_tokens"] and error["request_id"], error
    assert len(open_registry().list()) == 2

    # 32 positions, a short answer: the chat prompt alone (its template and instruction, ~40 tokens) does not
    # fit, which only the tokenizer tells: refused when the run starts, before any arm trains
    short = ["--max-target-tokens", "8", "--max-new-tokens", "4"]
    code, _, err = run_captured([*experiment, "--model", str(narrow), *short], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "max_target_tokens: the model's 32 positions (n_positions) hold its chat prompt" in err, err
    failed = open_registry().list(kind="lm_experiment")[0]
    assert failed.status == RunStatus.FAILED and "lower max_target_tokens" in (failed.message or "")
    assert len(open_registry().list(kind="lm_experiment_arm")) == 1  # no arm trained for it
