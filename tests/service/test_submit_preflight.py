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


def test_an_elm_search_with_no_pruning_warmup_is_accepted(client: TestClient, tldrlab_home: Path) -> None:
    """`warmup: 0` (allowed: `>= 0`, prune from the first evaluation) became the search's median pruner's
    `min_iter: 0`, which the sweep spec refuses, while the search's own sweep was built: a 500 internal error
    over the API (a pydantic traceback from `tldrlab elm optimize --warmup 0`). It prunes as a warm-up of 1
    does (a trial's evaluations are iterations 1, 2, ...) and is accepted."""
    import torch

    from tldrlab.elm.prepare import write_split

    data = tldrlab_home / "data" / "prepared"
    data.mkdir(parents=True)
    # 4 records: a batch of the smallest searched size (fewer are refused)
    records = [{"task_type": "summary", "embedding_index": i, "target_text": "a summary"} for i in range(4)]
    for split in ("train", "val"):
        write_split(data, split, records, torch.zeros(4, 4))
    config = {"base": {"data": "prepared"}, "warmup": 0, "study": "no-warmup"}
    accepted = client.post("/runs", json={"kind": "elm_optimize", "config": config})
    assert accepted.status_code == 202, accepted.text
    assert open_registry().get(accepted.json()["id"]).config["warmup"] == 0


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


def test_an_output_the_server_cannot_write_is_refused_at_its_field(tldrlab_home: Path) -> None:
    # The kind's own checks of its `outputs` (and `must_exist`) know the field they refuse, but submit turned
    # every input-check refusal into one at `loc` [] (the config as a whole). Reached over HTTP where the
    # server may not write its runs directory: a real `tldrlab serve`, bound by file modes as any user is.
    import os
    import subprocess
    import sys

    import httpx

    from mountutil import unprivileged
    from netutil import free_port, wait_for_port

    runs = tldrlab_home / "runs"
    runs.mkdir(parents=True)
    runs.chmod(0o555)
    port = free_port()
    command = [sys.executable, "-m", "tldrlab", "serve", "--port", str(port), "--workers", "0"]
    server = subprocess.Popen(
        unprivileged(command), env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, timeout=60)
        response = httpx.post(
            f"http://127.0.0.1:{port}/runs",
            json={"kind": "lvm_sequences", "config": {"out": "seqs.npz"}},
            headers={"X-Request-ID": "req-7"},
            timeout=60,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        runs.chmod(0o755)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_config" and body["request_id"] == "req-7", body
    assert body["message"].startswith("out: cannot write ") and "is not writable" in body["message"], body
    assert body["errors"] == [{"loc": ["out"], "msg": body["message"]}], body
    assert open_registry().list() == []


def test_an_input_that_is_not_there_is_refused_at_its_field_by_submit(tldrlab_home: Path) -> None:
    # Over HTTP a missing input is refused by confinement first (422 at the field); `launch.submit_run`'s own
    # `must_exist` refusal named the field in its words ("path not found ...") but answered it at `loc` [].
    from tldrlab.config import get_settings
    from tldrlab.errors import InvalidConfigError
    from tldrlab.launch import submit_run
    from tldrlab.service.queue import open_queue

    settings = get_settings()
    missing = tldrlab_home / "data" / "nope.txt"
    with pytest.raises(InvalidConfigError) as refused:
        submit_run(
            "ingest",
            {"path": str(missing)},
            queue=open_queue(settings),
            registry=open_registry(),
            settings=settings,
        )
    message = f"path not found (no such file or directory): {missing}"
    assert refused.value.message == message
    assert refused.value.details["errors"] == [{"loc": ["path"], "msg": message}]
    assert open_registry().list() == []


def test_a_tokenizer_path_that_holds_no_tokenizer_is_refused_at_its_field(
    client: TestClient, tldrlab_home: Path
) -> None:
    # `tldrlab train --tokenizer X` refuses a directory without tokenizer.json, or a file of another kind,
    # before a run exists; `POST /runs` only confined the path (it is in the data root) and queued a training
    # that failed in the worker ("no tokenizer.json in ...")
    from tldrlab.tokenizers import train_tokenizer

    root = tldrlab_home / "data"
    (root / "empty").mkdir(parents=True)
    (root / "text.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    config: dict[str, Any] = {"model": "char_lstm", "data": {"path": "text.txt"}, "train": {"max_steps": 1}}
    for tokenizer, said in (
        ("empty", "no tokenizer.json in empty (nor in its tokenizer/ or model/ subdirectory)"),
        ("text.txt", "text.txt is not a tokenizer: give a tokenizer directory"),
        ("nosuch", "no such file or directory in the data roots"),  # confinement's, as before
    ):
        response = client.post(
            "/runs", json={"kind": "train", "config": {**config, "tokenizer": {"path": tokenizer}}}
        )
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "invalid_config", body
        (error,) = body["errors"]
        assert error["loc"] == ["tokenizer", "path"] and said in error["msg"], body
        assert body["message"] == f"tokenizer.path: {error['msg']}", body
        assert str(tldrlab_home) not in response.text
    # a sweep's trials would train with it: refused at the field of the sweep's base config
    sweep = {
        "program": "tldrlab.train",
        "method": "grid",
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "parameters": {"train.lr": {"values": [0.001]}},
        "config": {**config, "tokenizer": {"path": "empty"}},
    }
    response = client.post("/runs", json={"kind": "sweep", "config": {"sweep": sweep}})
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["errors"]] == [["sweep", "config", "tokenizer", "path"]]
    assert open_registry().list() == []
    train_tokenizer("char", [root / "text.txt"], 50, root / "tok")
    accepted = client.post(
        "/runs", json={"kind": "train", "config": {**config, "tokenizer": {"path": "tok"}}}
    )
    assert accepted.status_code == 202, accepted.text
