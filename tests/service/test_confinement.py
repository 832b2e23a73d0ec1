"""API runs read only inside the data roots, uploaded data sets and run directories, and write only inside
their run directory; configs are validated at submit; server paths never leave the API. Real uvicorn, real
registry and queue, a real worker (in this process) training real tokenizers."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from svc_helpers import ServerThread

from sequencesutil import write_tiny_sequences
from tldrlab.config import get_settings
from tldrlab.runs import RunStatus, create_run, open_registry
from tldrlab.service.app import create_app
from tldrlab.service.worker import WorkerConfig, build_worker

SECRET = "ROOTONLYSECRET"
CORPUS = "the quick brown fox jumps over the lazy dog\nsummaries need short clear sentences\n" * 40
BURST = WorkerConfig(burst=True, heartbeat_s=0.1, poll_s=0.05)


@pytest.fixture
def home(tldrlab_home: Path, tmp_path: Path) -> Path:
    data = tldrlab_home / "data"
    data.mkdir(parents=True)
    (data / "corpus.txt").write_text(CORPUS)
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(f"{SECRET} {SECRET}\n" * 50)
    os.symlink(secret, data / "link.txt")
    os.symlink(secret.parent, data / "linkdir")
    return tldrlab_home


@pytest.fixture
def server(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    monkeypatch.setenv("TLDRLAB_MAX_UPLOAD_BYTES", str(64 * 1024))
    monkeypatch.setenv("TLDRLAB_MAX_GENERATE_TOKENS", "256")
    get_settings.cache_clear()
    with ServerThread(create_app()) as running:
        yield running


def _tokenizer(server: ServerThread, **config: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}/tokenizers/train", json={"config": {"method": "bpe", "vocab_size": 300, **config}}
    )


def _refused(response: httpx.Response, home: Path, status: int = 403) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    # an invalid config and a path not allowed list their fields as well (`errors`), in the words of the
    # message
    listed = {"errors"} if body["code"] in ("invalid_config", "path_not_allowed") else set()
    assert set(body) == {"code", "message", "request_id", *listed}
    assert all(error["msg"] in body["message"] for error in body.get("errors", []))
    assert SECRET not in response.text and str(home.parent) not in response.text
    return str(body["message"])


def _work() -> None:
    build_worker(config=BURST).run()


def test_api_runs_read_nothing_outside_the_read_roots(
    server: ServerThread, home: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    existing = _refused(_tokenizer(server, corpus=[str(secret)]), home)
    assert "TLDRLAB_DATA_ROOTS" in existing and "dataset:<id>" in existing
    missing = _refused(_tokenizer(server, corpus=[str(tmp_path / "outside" / "nope.txt")]), home)
    assert missing == existing  # nothing tells a client what exists outside
    for corpus in ("../outside/secret.txt", "link.txt", "linkdir/secret.txt", "/etc/passwd", "~/x"):
        _refused(_tokenizer(server, corpus=[corpus]), home)
    for out_dir in ("/tmp/anywhere", "../../escape", "tok/../../../escape"):
        message = _refused(_tokenizer(server, corpus=["corpus.txt"], out_dir=out_dir), home)
        assert "run directory" in message
    train = {"model": "char_lstm", "data": {"path": "corpus.txt"}, "tokenizer": {"method": "char"}}
    for field, value in (("data", {"path": str(secret)}), ("tokenizer", {"path": "/etc", "method": "char"})):
        _refused(httpx.post(f"{server.url}/runs/train", json={"config": {**train, field: value}}), home)
    pretrained = {**train, "model": "t5", "model_settings": {"from_pretrained": str(secret.parent)}}
    _refused(httpx.post(f"{server.url}/runs/train", json={"config": pretrained}), home)
    _refused(
        httpx.post(f"{server.url}/runs", json={"kind": "lvm_ingest", "config": {"path": str(secret)}}), home
    )
    stored = {"kind": "lvm_ingest", "config": {"path": "corpus.txt", "store_url": "sqlite:////tmp/x.db"}}
    _refused(httpx.post(f"{server.url}/runs", json=stored), home)
    assert httpx.get(f"{server.url}/runs").json()["runs"] == []  # nothing refused became a run

    # Inside the data root: accepted, read and trained on; the output stays inside the run directory.
    created = _tokenizer(server, corpus=["corpus.txt"], out_dir="tok")
    assert created.status_code == 202, created.text
    run_id = created.json()["id"]
    detail = httpx.get(f"{server.url}/runs/{run_id}").json()
    assert detail["config"]["corpus"] == ["corpus.txt"]  # as the client named it, not the server path
    assert str(home) not in json.dumps(detail)
    _work()
    record = open_registry().get(run_id)
    assert record.status == RunStatus.COMPLETED, record.message
    vocab = (Path(record.run_dir) / "tok" / "tokenizer.json").read_text()
    assert "summaries" in vocab and SECRET not in vocab and "ROOT" not in vocab
    assert not (home / "tok").exists()


def test_a_path_turned_symlink_after_submit_is_refused_by_the_worker(
    server: ServerThread, home: Path, tmp_path: Path
) -> None:
    created = _tokenizer(server, corpus=["corpus.txt"])
    assert created.status_code == 202
    (home / "data" / "corpus.txt").unlink()
    os.symlink(tmp_path / "outside" / "secret.txt", home / "data" / "corpus.txt")
    _work()
    record = open_registry().get(created.json()["id"])
    assert record.status == RunStatus.FAILED and record.error_code == "path_not_allowed"
    assert not (Path(record.run_dir) / "tokenizer").exists()


def _chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_datasets_are_uploaded_streamed_and_named_by_id(server: ServerThread, home: Path) -> None:
    body = CORPUS.encode()
    uploaded = httpx.post(
        f"{server.url}/datasets",
        params={"name": "../../my corpus.txt"},
        content=_chunks(body),
        headers={"content-type": "application/octet-stream"},
    )
    assert uploaded.status_code == 201, uploaded.text
    info = uploaded.json()
    assert info["sha256"] == hashlib.sha256(body).hexdigest() and info["size_bytes"] == len(body)
    assert info["format"] == "text" and info["name"] == "my_corpus.txt" and info["records"]
    assert "path" not in info and str(home) not in uploaded.text
    listed = httpx.get(f"{server.url}/datasets").json()
    assert [d["id"] for d in listed["datasets"]] == [info["id"]] and str(home) not in json.dumps(listed)
    assert httpx.get(f"{server.url}/datasets/{info['id']}").json()["sha256"] == info["sha256"]
    stored = list((home / "datasets").rglob("my_corpus.txt"))
    assert len(stored) == 1 and stored[0].read_bytes() == body

    too_big = httpx.post(
        f"{server.url}/datasets",
        params={"name": "big.txt"},
        content=_chunks(b"x" * (200 * 1024)),
        headers={"content-type": "application/octet-stream"},
    )
    assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"
    unreadable = httpx.post(f"{server.url}/datasets", params={"name": "x.bin"}, content=b"\x00\xff" * 100)
    assert unreadable.status_code == 400 and str(home) not in unreadable.text
    leftovers = [p for p in (home / "datasets").rglob("*") if p.is_file()]
    assert leftovers == stored  # refused uploads leave nothing behind

    run = _tokenizer(server, corpus=[f"dataset:{info['id']}"])
    assert run.status_code == 202, run.text
    _refused(_tokenizer(server, corpus=["dataset:ds-nope"]), home, status=422)
    _work()
    assert open_registry().get(run.json()["id"]).status == RunStatus.COMPLETED


def test_invalid_run_configs_get_422_at_submit(server: ServerThread, home: Path) -> None:
    data = {"path": "corpus.txt"}
    bad = [
        {"model": "nope", "data": data},
        {"model": "char_lstm", "data": data, "train": {"max_steps": -1}},
        {"model": "char_lstm", "data": data, "train": {"max_steps": 10**15}},
        {"model": "char_lstm", "data": data, "train": {"batch_size": 0}},
        {"model": "char_lstm"},  # no data
        {"model": "char_lstm", "data": {"path": "missing.txt"}},
        {"model": "t5", "data": data, "model_settings": {"size": "galactic"}},
        {"model": "char_lstm", "data": data, "surprise": 1},
    ]
    for config in bad:
        response = httpx.post(f"{server.url}/runs/train", json={"config": config})
        assert response.status_code == 422, (config, response.text)
        assert response.json()["code"] == "invalid_config"
    assert _tokenizer(server, corpus=[]).status_code in (400, 422)
    assert httpx.post(f"{server.url}/runs", json={"kind": "smoke", "config": {"steps": 0}}).status_code == 422
    # Generation lengths past TLDRLAB_MAX_GENERATE_TOKENS (256 here), for runs and for digests.
    parent = create_run("train", {"model": "char_lstm", "data": data})
    open_registry().update(parent.id, status=RunStatus.COMPLETED)
    long = {"config": {"prompts": ["hi"], "options": {"max_new_tokens": 4000}}}
    response = httpx.post(f"{server.url}/runs/{parent.id}/generate", json=long)
    assert response.status_code == 422 and "256" in response.json()["message"]
    ok = {"config": {"prompts": ["hi"], "options": {"max_new_tokens": 200}}}
    assert httpx.post(f"{server.url}/runs/{parent.id}/generate", json=ok).status_code == 202
    thread = {"id": "t1", "posts": [{"id": "1", "number": 1, "text": "A post. Another sentence here."}]}
    assert httpx.post(f"{server.url}/threads", json=thread, timeout=120).status_code == 201
    for params, status in (
        ({"model_path": "/etc"}, 403),
        ({"model_path": "../outside"}, 403),
        ({"model_path": "corpus.txt", "max_new_tokens": 10**6}, 422),
    ):
        summary = httpx.post(
            f"{server.url}/stream_summary", json={"thread_id": "t1", "summarizer": "local", "params": params}
        )
        assert summary.status_code == status, (params, summary.text)
    endpoint = {"thread_id": "t1", "summarizer": "openai", "params": {"base_url": "http://attacker.example"}}
    assert httpx.post(f"{server.url}/stream_summary", json=endpoint).status_code == 403


def test_server_paths_never_reach_api_responses(server: ServerThread, home: Path) -> None:
    # A CLI run (not confined) with absolute paths in its config, messages and logs.
    data_file = home / "data" / "corpus.txt"
    record = create_run("train", {"model": "char_lstm", "data": {"path": str(data_file)}})
    message = (
        f"failed: [Errno 2] No such file or directory: '/srv/private/{SECRET}.txt' (in {record.run_dir})"
    )
    open_registry().update(record.id, status=RunStatus.FAILED, message=message)
    log_line = {"time": 0, "level": "ERROR", "message": f"could not read {home}/store/x.db", "logger": "t"}
    (Path(record.run_dir) / "log.jsonl").write_text(json.dumps(log_line) + "\n")
    responses = [
        httpx.get(f"{server.url}/runs"),
        httpx.get(f"{server.url}/runs/{record.id}"),
        httpx.get(f"{server.url}/runs/{record.id}/logs"),
        httpx.get(f"{server.url}/runs/{record.id}/events", params={"logs": "true"}),
    ]
    for response in responses:
        assert response.status_code == 200
        for leaked in (str(home), "/srv/private", str(home.parent)):
            assert leaked not in response.text, (response.url, leaked)
    detail = responses[1].json()
    assert detail["config"]["data"]["path"] == "corpus.txt"  # relative to its data root
    assert "<path>" in detail["message"] and f"run:{record.id}" in detail["message"]


def test_runs_submitted_directly_name_only_models_inside_the_read_roots(
    server: ServerThread, home: Path
) -> None:
    for kind, config in (
        ("generate", {"model_run": "/etc", "prompts": ["hi"]}),
        ("score", {"model_run": "../outside", "text": "hi"}),
        ("evaluate", {"model_run": "/tmp"}),
    ):
        response = httpx.post(f"{server.url}/runs", json={"kind": kind, "config": config})
        assert response.status_code == 403, (kind, response.text)
    unknown = httpx.post(
        f"{server.url}/runs", json={"kind": "score", "config": {"model_run": "nope", "text": "x"}}
    )
    assert unknown.status_code == 422


def test_paths_hidden_in_free_form_settings_are_refused(server: ServerThread, home: Path) -> None:
    lvm = {
        "sequences": "corpus.txt",
        "model": "pretrained",
        "model_settings": {"pretrained": "/etc/models/x"},
    }
    elm = {"data": "corpus.txt", "model": {"lm_settings": {"from_pretrained": "../outside"}}}
    for kind, config in (("lvm_train", lvm), ("elm_train", elm)):
        response = httpx.post(f"{server.url}/runs", json={"kind": kind, "config": config})
        assert response.status_code == 403 and "declared as paths" in response.json()["message"], (
            response.text
        )
    # names pass (on a real sequences file: a text file given as one is refused at submit)
    lvm["sequences"] = write_tiny_sequences(home / "data" / "s.npz").name
    lvm["model_settings"] = {"pretrained": "smollm2", "skip": "mean"}
    assert httpx.post(f"{server.url}/runs", json={"kind": "lvm_train", "config": lvm}).status_code == 202


def test_a_score_request_past_its_token_bound_is_refused_up_front(server: ServerThread, home: Path) -> None:
    # a score request had no bound on the tokens scored: a 100,000-character text was one forward pass
    from tldrlab.runs import start_run

    with start_run("train", {}) as trained:  # completed: the only state a score is asked of
        pass
    for path in ("/runs", f"/runs/{trained.id}/score"):
        config = {"text": "hi", "max_tokens": 100_000}
        body = (
            {"kind": "score", "config": {"model_run": "smollm2", **config}}
            if path == "/runs"
            else {"config": config}
        )
        response = httpx.post(f"{server.url}{path}", json=body)
        assert response.status_code == 422, (path, response.text)
        problem = response.json()
        assert "max_tokens" in problem["message"] and "8192" in problem["message"], problem
        assert problem["code"] and problem["request_id"]


def test_a_sweeps_base_config_named_as_a_file_is_refused_unread(
    server: ServerThread, home: Path, tmp_path: Path
) -> None:
    # validating a sweep's spec read a `config` given as a file name before any path was confined: a file of
    # the server came back in the 422's words, a YAML one was loaded as the base config, and a missing one was
    # a 404, which told a client what exists there
    secret = tmp_path / "outside" / "secret.txt"
    base = home / "data" / "base.yaml"
    base.write_text("model: char_lstm\n")
    answers = []
    lr = {"train.lr": {"values": [0.001, 0.002]}}
    missing = tmp_path / "outside" / "nope.yaml"
    for named in (str(secret), str(missing), str(base), "base.yaml", "/etc/hostname"):
        sweep = {"program": "tldrlab.train", "method": "random", "config": named, "parameters": lr}
        response = httpx.post(f"{server.url}/runs", json={"kind": "sweep", "config": {"sweep": sweep}})
        answers.append(_refused(response, home))
        assert response.json()["errors"][0]["loc"] == ["sweep", "config"]
    assert len(set(answers)) == 1  # the same words whatever the name: nothing tells what exists
    assert httpx.get(f"{server.url}/runs").json()["runs"] == []
