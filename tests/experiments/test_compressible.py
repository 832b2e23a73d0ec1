"""`tldrlab experiment compress` (kind `lm_compress`) refuses a model of another architecture than the
Llama layout it cuts before a run exists, from the model's `config.json` or GGUF header: it used to load the
whole model (a GGUF file de-quantized first) inside a run that then failed."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from cliutil import run_captured
from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.models.architecture import gguf_architecture
from tldrlab.models.resolve import bundled_gguf
from tldrlab.runs import create_run, open_registry
from tldrlab.service.app import create_app

REFUSED = "compression cuts Llama-style causal LMs (llama, mistral, qwen2)"


def _gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _gguf_header(architecture: str) -> bytes:
    """A GGUF v3 header with no tensors whose first key is a string array (skipped while looking for the
    architecture), then a uint32, then `general.architecture`."""
    tokens = struct.pack("<IQ", 8, 2) + _gguf_string("a") + _gguf_string("bc")
    keys = [
        _gguf_string("tokenizer.ggml.tokens") + struct.pack("<I", 9) + tokens,
        _gguf_string("general.alignment") + struct.pack("<II", 4, 32),
        _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string(architecture),
    ]
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(keys)) + b"".join(keys)


def test_a_non_llama_model_is_refused_before_a_run_on_the_command_line_and_the_api(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import transformers

    tokenizer = tiny_chat_tokenizer()
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=1, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    data = tldrlab_home / "data"
    gpt2 = save_tiny_model(transformers.GPT2LMHeadModel(config), tokenizer, data / "models" / "gpt2")
    argv = ["experiment", "compress", "--importance", "weight", "--out", str(tmp_path / "half")]
    capsys.readouterr()  # what saving the model printed
    code, _, err = run_captured([*argv, str(gpt2)], capsys)
    assert code == 2 and f"is a gpt2 model; {REFUSED}" in err, (code, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert open_registry().list() == []
    # the LM experiment's compressed arms too (its baseline arm trained first, then the compressed one
    # failed); the baseline arm alone fine-tunes any causal LM, so it is not refused here
    pairs = data / "pairs.jsonl"
    record = '{"document": "a small library for reading files", "summary": "file reader"}\n'
    pairs.write_text(record * 4)
    experiment = [
        "experiment",
        "lm",
        "--data",
        str(pairs),
        "--model",
        str(gpt2),
        "--seeds",
        "1",
        "--budget",
        "2",
    ]
    experiment += ["--eval-size", "1", "--test-size", "1", "--batch-size", "1"]
    code, _, err = run_captured([*experiment, "--arms", "baseline,compressed"], capsys)
    assert code == 2 and f"is a gpt2 model; {REFUSED}" in err, (code, err)
    assert open_registry().list() == []
    # a GGUF file says its architecture in its header, read without loading the file
    (data / "falcon.gguf").write_bytes(_gguf_header("falcon"))
    assert gguf_architecture(data / "falcon.gguf") == "falcon"
    code, _, err = run_captured([*argv, str(data / "falcon.gguf")], capsys)
    assert code == 2 and f"is a falcon model; {REFUSED}" in err, (code, err)
    assert open_registry().list() == []
    client = TestClient(create_app())
    body = {
        "kind": "lm_compress",
        "config": {"model": "models/gpt2", "compression": {"importance": "weight"}},
    }
    response = client.post("/runs", json=body, headers={"X-Request-ID": "req-arch"})
    error = response.json()
    assert response.status_code == 422 and error["code"] == "invalid_config", response.text
    assert error["request_id"] == "req-arch" and error["errors"][0]["loc"] == ["model"], error
    assert REFUSED in error["message"] and open_registry().list() == []
    # named as the client named it: the server's path of the model (its data root) was in the answer
    assert str(tldrlab_home) not in response.text, response.text
    assert error["message"].startswith("model: models/gpt2 is a gpt2 model"), error
    assert error["errors"][0]["msg"].startswith("models/gpt2 is a gpt2 model"), error
    # the Llama-style ones pass the check: the bundled SmolLM2 GGUF, and a tiny Llama that compresses
    bundled = bundled_gguf()
    assert bundled is not None and gguf_architecture(bundled) == "llama"
    llama = save_tiny_model(tiny_llama(tokenizer), tokenizer, data / "llama")
    capsys.readouterr()
    code, _, err = run_captured([*argv, "--ratio", "0.5", str(llama)], capsys)
    assert code == 0, err
    assert [r.status.value for r in open_registry().list()] == ["completed"]


def test_an_out_that_is_a_file_is_refused_before_a_run(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the run loaded, ranked and cut the model, then failed at the export (a FileExistsError traceback from
    # mkdir) and stayed behind as a failed run
    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(0)
    model = save_tiny_model(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    capsys.readouterr()  # what saving the model printed
    argv = ["experiment", "compress", str(model), "--importance", "weight", "--out", str(notes)]
    code, _, err = run_captured(argv, capsys)
    assert code == 2 and f"out: {notes} is a file: give a directory" in err, (code, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert open_registry().list() == [] and notes.read_text() == "mine\n"


def test_an_out_that_is_the_model_compressed_is_refused_before_a_run(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `experiment compress mylm --out mylm` exported the cut over the model: its weights and config were
    # replaced, and the pretrained model was gone
    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(0)
    model = save_tiny_model(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny")
    before = (model / "model.safetensors").read_bytes()
    capsys.readouterr()  # what saving the model printed
    argv = [
        "experiment",
        "compress",
        str(model),
        "--importance",
        "weight",
        "--ratio",
        "0.5",
        "--out",
        f"{model}/",
    ]
    code, _, err = run_captured(argv, capsys)
    assert code == 2 and f"out: {model} is the directory of the model being compressed" in err, (code, err)
    assert open_registry().list() == [] and (model / "model.safetensors").read_bytes() == before


def test_an_ambiguous_run_id_prefix_is_refused_at_submit(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the check took an ambiguous run id prefix (AmbiguousRunIdError, a NotFoundError) for a model not there
    # yet and let the config through: the run was created and failed once started, on the same ambiguity
    for run_id in ("train-shared-a", "train-shared-b"):
        create_run("train", {"model": "causal_lm"}, run_id=run_id)
    argv = [
        "experiment",
        "compress",
        "--importance",
        "weight",
        "--out",
        str(tmp_path / "half"),
        "train-shared",
    ]
    code, _, err = run_captured(argv, capsys)
    assert code == 2 and err.startswith("error [invalid_config] model: "), (code, err)
    assert "run id prefix 'train-shared' is ambiguous (2 runs match: train-shared" in err
    assert "more of the run id" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert open_registry().list(kind="lm_compress") == []
    # the LM experiment's context check (baseline arm only, so no compressibility check) the same way
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"document": "a small library for reading files", "summary": "file reader"}\n' * 4)
    experiment = ["experiment", "lm", "--data", str(pairs), "--model", "train-shared", "--arms", "baseline"]
    code, _, err = run_captured(experiment, capsys)
    assert code == 2 and "model: run id prefix 'train-shared' is ambiguous" in err, (code, err)
    assert open_registry().list(kind="lm_experiment") == []


def test_ranking_units_without_calibration_records_is_refused_before_a_run(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the default importance ('activation') and 'taylor' rank units on calibration records: a config without
    # calibration_data passed validation, POST /runs answered 202, and the run loaded the model (10-30 s)
    # before it failed on the missing records (the command line the same, after loading it)
    from tldrlab.experiments.config import LMCompressConfig

    client = TestClient(create_app())
    for config in ({}, {"compression": {"importance": "taylor"}}):
        response = client.post("/runs", json={"kind": "lm_compress", "config": config})
        error = response.json()
        assert response.status_code == 422 and error["code"] == "invalid_config", response.text
        assert error["errors"][0]["loc"] == ["calibration_data"], error
        assert "give calibration_data (or importance 'weight')" in error["message"], error
        assert error["request_id"], error
    assert open_registry().list() == []
    code, _, err = run_captured(["experiment", "compress", "--out", str(tmp_path / "half")], capsys)
    assert code == 2 and "calibration_data" in err and "Traceback" not in err, (code, err)
    assert open_registry().list() == []
    # what needs no records still validates: weight norms, fresh weights, or records given
    LMCompressConfig.model_validate({"compression": {"importance": "weight"}})
    LMCompressConfig.model_validate({"compression": {"init": "random"}})
    LMCompressConfig.model_validate({"calibration_data": "pairs.jsonl"})


def test_an_lm_experiment_of_a_model_that_is_no_causal_lm_is_refused_at_submit(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An lm_experiment of its baseline arm alone (no compressibility check) on a T5 directory or T5 GGUF
    file was accepted (202 over the API, the command line created the run) and failed once the arm loaded
    the model. Refused before a run exists by the check the arm's load makes (`check_causal_lm_model`),
    naming `model`. (`lm_compress` and the compressed arms refused them already: compression cuts only
    Llama-style models.)"""
    from tinylm import t5_gguf_header, tiny_t5

    data = tldrlab_home / "data"  # inside the API's data root
    save_tiny_model(*tiny_t5(), data / "t5")
    t5_gguf_header(data / "t5.gguf")
    pairs = data / "pairs.jsonl"
    pairs.write_text('{"document": "a small library for reading files", "summary": "file reader"}\n' * 4)
    capsys.readouterr()  # what saving the model printed
    experiment = ["experiment", "lm", "--data", str(pairs), "--arms", "baseline", "--seeds", "1", "--budget"]
    experiment += ["1", "--eval-size", "1", "--test-size", "1", "--batch-size", "1", "--model"]
    for name in ("t5", "t5.gguf"):
        code, _, err = run_captured([*experiment, str(data / name)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (name, err)
        assert f"[invalid_config] model: {data / name} holds a t5 model, not a causal LM" in err, (name, err)
        compress = ["experiment", "compress", "--importance", "weight", str(data / name)]
        code, _, err = run_captured(compress, capsys)
        assert code == 2 and f"is a t5 model; {REFUSED}" in err, (name, err)
    assert open_registry().list() == []
    client = TestClient(create_app())
    sizes = {"data": "pairs.jsonl", "arms": ["baseline"], "seeds": [1], "eval_size": 1, "test_size": 1}
    for name in ("t5", "t5.gguf"):
        config = {**sizes, "model": name}
        response = client.post("/runs", json={"kind": "lm_experiment", "config": config})
        answer = response.json()
        assert response.status_code == 422 and answer["code"] == "invalid_config", response.text
        assert answer["errors"][0]["loc"] == ["model"], answer
        assert answer["message"].startswith(f"model: {name} holds a t5 model, not a causal LM"), answer
    assert open_registry().list() == []
    # a causal LM is accepted, and a model not there yet is left to the run
    tokenizer = tiny_chat_tokenizer()
    save_tiny_model(tiny_llama(tokenizer), tokenizer, data / "llama")
    for model in ("llama", create_run("train", {"model": "causal_lm"}).id):
        config = {**sizes, "model": model}
        response = client.post("/runs", json={"kind": "lm_experiment", "config": config})
        assert response.status_code == 202, response.text
