"""The parameter budget counted again with what a training reads when it starts: the vocabulary of the
tokenizer directory it is given, which its config's validation could not count (it counts
`tokenizer.vocab_size`, 8000 unless set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.config import get_settings
from tldrlab.errors import InvalidConfigError
from tldrlab.kinds import validate_config
from tldrlab.launch import execute
from tldrlab.runs import create_run, open_registry
from tldrlab.tokenizers.train import train_tokenizer


def test_a_tokenizer_directory_bigger_than_counted_fails_the_run_before_its_model_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A char_lstm over a given tokenizer of 12,005 tokens was counted at submit over the default 8000
    (72,160 parameters, within a 100,000 limit) and built over the tokenizer's 12,005 (108,205) unchecked: a
    tokenizer path was a way round the limit. The run now counts again with the tokenizer's size and fails
    before building the model, naming the field and the tokenizer."""
    monkeypatch.setenv("TLDRLAB_MAX_MODEL_PARAMETERS", "100000")
    get_settings.cache_clear()
    # 12,000 distinct characters, each line five times (the char tokenizer keeps the characters seen
    # min_frequency=2 times in the lines it does not hold out)
    characters = "".join(chr(0x4E00 + i) for i in range(12_000))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"{characters[i : i + 100]}\n" * 5 for i in range(0, 12_000, 100)))
    tokenizer = tmp_path / "tokenizer"
    assert train_tokenizer("char", [corpus], 20_000, tokenizer)["actual_vocab_size"] == 12_005
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. Whether tis nobler in the mind.\n" * 40)
    raw = {
        "model": "char_lstm",
        "model_settings": {"embedding_dim": 4, "hidden_dim": 4, "num_layers": 1},
        "data": {"path": str(text)},
        "tokenizer": {"path": str(tokenizer)},
        "train": {"max_steps": 2, "batch_size": 2, "device": "cpu", "progress": False},
        "final_eval": {"enabled": False},
        "wandb": "disabled",
    }
    config = validate_config("train", raw)  # 72,160 parameters as counted at submit
    problem = "108,205 parameters (1.08e+05), above the limit of 100,000 (TLDRLAB_MAX_MODEL_PARAMETERS)"
    said = f"vocab_size comes from the tokenizer {tokenizer}, which has 12,005 tokens"
    expected = f"tokenizer.vocab_size: {problem} ({said})"

    record = create_run("train", config)
    with pytest.raises(InvalidConfigError) as refused:
        execute(record.id)
    assert refused.value.message == expected
    errors = [{"loc": ["tokenizer", "vocab_size"], "msg": f"{problem} ({said})"}]
    assert refused.value.details["errors"] == errors
    failed = open_registry().get(record.id)
    assert (failed.status.value, failed.error_code) == ("failed", "invalid_config")
    logged = (Path(failed.run_dir) / "log.jsonl").read_text()
    assert "training char_lstm" not in logged and not (Path(failed.run_dir) / "checkpoints").exists()

    path = tmp_path / "train.json"
    path.write_text(json.dumps(raw))
    code, out, err = run_captured(["train", "--config", str(path), "--quiet"], capsys)
    assert (code, out, err.strip()) == (2, "", f"error [invalid_config] {expected}")
