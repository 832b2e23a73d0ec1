"""What a run reads is checked at submit, by the one check a command line makes before it creates a run
(`tldrlab.launch.check_inputs`): `POST /runs` answers 422 (code, message, request_id) and creates no run. The
API used to accept an `elm_train` on a directory `elm prepare` did not write, `lvm_index {}` on an empty
concept store and `lvm_evaluate {}` with no sequences (202: each run failed once a worker started it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.runs import open_registry
from tldrlab.service.app import create_app


@pytest.fixture
def client(tldrlab_home: Path) -> TestClient:
    return TestClient(create_app())


def _refused(client: TestClient, kind: str, config: dict[str, Any]) -> str:
    response = client.post("/runs", json={"kind": kind, "config": config}, headers={"X-Request-ID": "req-9"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_config" and body["request_id"] == "req-9", body
    assert open_registry().list() == []
    message: str = body["message"]
    return message


def test_an_elm_training_on_an_unprepared_directory_is_refused_at_submit(
    client: TestClient, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from tldrlab.elm.prepare import write_split

    data = tldrlab_home / "data" / "raw"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text('{"text": "a", "summary": "b"}\n')
    message = _refused(client, "elm_train", {"data": "raw"})
    assert "is not a prepared ELM data directory" in message and "elm_prepare run" in message
    assert str(tldrlab_home) not in message  # the server's paths are not shown
    # the command line refuses it with the same check, before a run exists
    code, _, err = run_captured(["elm", "train", "--data", str(data), "--max-steps", "1"], capsys)
    assert code == 3 and "is not a prepared ELM data directory" in err and "Traceback" not in err
    assert open_registry().list() == []
    record = {"task_type": "summary", "embedding_index": 0, "target_text": "a summary"}
    for split in ("train", "val"):
        write_split(data, split, [record], torch.zeros(1, 4))
    accepted = client.post("/runs", json={"kind": "elm_train", "config": {"data": "raw"}})
    assert accepted.status_code == 202, accepted.text


def test_lvm_index_and_evaluate_with_nothing_to_read_are_refused_at_submit(
    client: TestClient, tldrlab_home: Path
) -> None:
    message = _refused(client, "lvm_index", {})
    # the store's SQLite URL, as the client may see it (its path after "sqlite:///" was shown in full)
    assert "no concepts stored in sqlite:///<home>/lvm/concepts.db" in message, message
    assert str(tldrlab_home) not in message
    assert "no concepts stored" in _refused(client, "lvm_sequences", {"out": "seqs.npz"})
    message = _refused(client, "lvm_evaluate", {})
    assert "no sequences file" in message and "run `tldrlab lvm sequences` first" in message


def test_a_tokenizer_corpus_that_is_a_directory_is_refused_at_submit(
    client: TestClient, tldrlab_home: Path
) -> None:
    (tldrlab_home / "data" / "texts").mkdir(parents=True)
    assert "is a directory; pass the files inside it" in _refused(client, "tokenizer", {"corpus": ["texts"]})


def test_a_training_on_a_directory_without_data_files_is_refused_at_submit(
    client: TestClient, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train`'s check read the data only for a split the config named: a directory holding no data file
    (no split named, none detected) was accepted, 202 over the API and a run on the command line, each run
    failing once it read the data ("the directory holds no data files"), left behind failed."""
    data = tldrlab_home / "data" / "empty"
    data.mkdir(parents=True)
    config = {"model": "char_lstm", "data": {"path": "empty"}, "train": {"max_steps": 1}}
    assert "holds no data files" in _refused(client, "train", config)
    (data / "notes.bin").write_bytes(b"\xff\xfe\x00")  # a file, but no data file of any format
    assert "no data files to detect a format from" in _refused(client, "train", config)
    (data / "notes.bin").unlink()
    argv = ["train", "--model", "char_lstm", "--data", str(data), "--train.max-steps", "1"]
    code, _, err = run_captured([*argv, "--wandb", "disabled"], capsys)
    assert code != 0 and "holds no data files" in err and "Traceback" not in err, (code, err)
    assert open_registry().list() == []
    (data / "text.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    accepted = client.post("/runs", json={"kind": "train", "config": config})
    assert accepted.status_code == 202, accepted.text


def test_the_machine_checks_are_left_to_the_worker(client: TestClient, tldrlab_home: Path) -> None:
    """The command line's check of its own device (`local_check`) is not the API's: a worker elsewhere may
    have the CUDA device the API's machine lacks."""
    (tldrlab_home / "data").mkdir(parents=True)
    (tldrlab_home / "data" / "text.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    config = {"model": "char_lstm", "data": {"path": "text.txt"}, "train": {"device": "cuda"}}
    accepted = client.post("/runs", json={"kind": "train", "config": config})
    assert accepted.status_code == 202, accepted.text


def test_a_sweep_whose_trials_would_find_no_data_is_refused_at_submit(
    client: TestClient, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep's own check (its trials' inputs) was the command line's alone (`local_check`, which also checks
    the device): over the API a sweep on a directory without data files was accepted (202) and each of its
    trials then failed; the command line refused the same sweep."""
    data = tldrlab_home / "data" / "empty"
    data.mkdir(parents=True)
    sweep = {
        "name": "empty-data",
        "program": "tldrlab.train",
        "method": "random",
        "run_cap": 2,
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "parameters": {"train.lr": {"values": [0.001, 0.003]}},
        "config": {"model": "char_lstm", "data": {"path": "empty"}, "train": {"max_steps": 1}},
    }
    assert "holds no data files" in _refused(client, "sweep", {"sweep": sweep})
    (data / "text.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    accepted = client.post("/runs", json={"kind": "sweep", "config": {"sweep": sweep}})
    assert accepted.status_code == 202, accepted.text
