"""A model that generates nothing is reported, never passed silently: digest, generate and eval."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cliutil import run_captured

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "digest"))  # the digest tests' tiny T5
from digest_helpers import sample_thread, tiny_t5


@pytest.fixture(scope="module")
def silent_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny T5 that can only emit special tokens (its generation config suppresses every other one),
    which decoding drops: whatever it is asked, its text is empty, as an undertrained model's often is."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    source = tiny_t5(tmp_path_factory.mktemp("t5"))
    model = T5ForConditionalGeneration.from_pretrained(str(source))
    model.generation_config.suppress_tokens = list(range(3, model.config.vocab_size))  # <pad> </s> <unk> left
    out = tmp_path_factory.mktemp("silent") / "model"
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(out))
    return out


def test_a_local_digest_with_no_text_warns_with_the_cause(
    silent_t5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = tmp_path / "thread.json"
    thread.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    argv = ["digest", str(thread), "-s", "local", "-p", f"model_path={silent_t5}", "-p", "max_new_tokens=8"]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    assert " • " not in out  # no bullets ...
    shown = " ".join((out + err).split())
    assert "note:" in shown and "generated no text" in shown and "train it longer" in shown  # ... and why
    code, out, err = run_captured([*argv, "--json"], capsys)
    digest = json.loads(out)
    assert digest["bullets"] == [] and "generated no text" in digest["notices"][-1]


def test_generate_marks_empty_outputs(silent_t5: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_captured(
        ["generate", str(silent_t5), "-p", "Serve lagers cold?", "--max-new-tokens", "5", "-n", "2"], capsys
    )
    assert code == 0, err
    assert "[0] (empty)" in out and "[1] (empty)" in out  # before: "[0] " and nothing else
    assert "2 of 2 outputs are empty" in err


def test_eval_counts_empty_predictions_and_warns(
    silent_t5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"document": p.text, "summary": "serve it cold"} for p in sample_thread().posts]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["eval", str(silent_t5), "--data", str(pairs), "--no-bertscore", "--max-new-tokens", "4", "--json"]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["metrics"]["empty_predictions"] == result["metrics"]["examples"] == len(rows)
    assert result["metrics"]["rouge1"] == 0.0
    assert any("every prediction is empty" in w for w in result["warnings"])
