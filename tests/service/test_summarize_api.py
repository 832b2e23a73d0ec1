"""POST /summarize on a real server: a tiny causal chat LM run (by alias) and a tiny seq2seq run, whole
answers and Server-Sent Events, the same summaries as the generate run kind, and bad requests answered 4xx."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from netutil import serve_app
from tinylm import model_run, save_tiny_model, tiny_chat_tokenizer, tiny_llama, tiny_t5
from tldrlab.config import get_settings
from tldrlab.launch import launch_run
from tldrlab.runs import open_registry
from tldrlab.runs.aliases import promote
from tldrlab.service.app import create_app

DOCS = [
    "The daemon watches a directory and runs a command when a file changes.",
    "Python module for talking to PostgreSQL databases, with a small library for configuration files.",
]


def _events(response: httpx.Response) -> list[tuple[str, Any]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: ") :])))
    return events


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tokenizer = tiny_chat_tokenizer()
    chat = tiny_llama(tokenizer, seed=3)
    t5, t5_tokenizer = tiny_t5()
    return {"chat": (chat, tokenizer), "t5": (t5, t5_tokenizer)}


def _runs(tiny_models: dict[str, Any]) -> tuple[str, str]:
    chat, tokenizer = tiny_models["chat"]
    t5, t5_tokenizer = tiny_models["t5"]
    chat_run = model_run(lambda d: save_tiny_model(chat, tokenizer, d))
    t5_run = model_run(
        lambda d: save_tiny_model(t5, t5_tokenizer, d),
        config={"model": "t5", "data": {"prefix": "summarize: "}},
    )
    promote(chat_run.id, "production")
    return chat_run.id, t5_run.id


def test_summaries_whole_and_streamed_match_the_generate_kind(tiny_models: dict[str, Any]) -> None:
    from tldrlab.service.app import create_app

    chat_run, t5_run = _runs(tiny_models)
    options = {"temperature": 0.0, "max_new_tokens": 12, "max_input_tokens": 1536}
    expected = launch_run("generate", {"model_run": chat_run, "prompts": DOCS, "options": options}).result
    assert expected is not None
    with serve_app(create_app()) as url:
        whole = httpx.post(
            f"{url}/summarize", json={"documents": DOCS, "alias": "production", "max_new_tokens": 12}
        )
        assert whole.status_code == 200, whole.text
        body = whole.json()
        assert body["model"] == "production" and body["kind"] == "causal"
        assert all(s["summary"] for s in body["summaries"])  # random weights, but words come out
        assert [s["summary"] for s in body["summaries"]] == [outs[0] for outs in expected["outputs"]]
        assert [(s["steps"], s["eos_terminated"]) for s in body["summaries"]] == [
            (d[0]["steps"], d[0]["eos_terminated"]) for d in expected["details"]
        ]

        with httpx.stream(
            "POST",
            f"{url}/summarize",
            json={"documents": DOCS, "model": chat_run, "max_new_tokens": 12, "stream": True},
            timeout=60,
        ) as streamed:
            assert streamed.headers["content-type"].startswith("text/event-stream")
            events = _events(streamed)
        names = [name for name, _ in events]
        assert names[0] == "start" and names[-1] == "done" and names.count("summary") == 2
        assert names.index("token") < names.index("summary")  # tokens arrive before their summary
        for index in (0, 1):
            tokens = "".join(d["text"] for n, d in events if n == "token" and d["index"] == index)
            summary = next(d for n, d in events if n == "summary" and d["index"] == index)
            assert summary["summary"] == body["summaries"][index]["summary"] == tokens.strip()

        seq2seq = httpx.post(
            f"{url}/summarize", json={"document": DOCS[0], "model": t5_run, "max_new_tokens": 6}
        )
        assert seq2seq.status_code == 200, seq2seq.text
        assert seq2seq.json()["kind"] == "seq2seq" and seq2seq.json()["summaries"][0]["steps"] >= 1
        with httpx.stream(
            "POST",
            f"{url}/summarize",
            json={"document": DOCS[0], "model": t5_run, "max_new_tokens": 6, "num_beams": 2, "stream": True},
            timeout=60,
        ) as beams:
            beam_events = [name for name, _ in _events(beams)]
        assert beam_events == ["start", "summary", "done"]  # beam search cannot stream tokens

        bad = {
            "no documents": {"alias": "production"},
            "both": {"document": "x", "documents": ["y"], "alias": "production"},
            "no model here": {"document": "x"},
            "unknown alias": {"document": "x", "alias": "nope"},
            "too long": {"document": "x", "alias": "production", "max_new_tokens": 5000},
            "beams": {"document": "x", "alias": "production", "num_beams": 99},
            "extra": {"document": "x", "alias": "production", "temperature": 1},
        }
        for what, request in bad.items():
            answer = httpx.post(f"{url}/summarize", json=request)
            assert answer.status_code in (400, 422), (what, answer.status_code, answer.text)
            assert {"code", "message", "request_id"} <= set(answer.json()), what
        outside = httpx.post(f"{url}/summarize", json={"document": "x", "model": str(Path("/etc"))})
        assert outside.status_code == 403


def test_a_model_that_cannot_summarize_is_a_4xx_without_server_paths(tiny_models: dict[str, Any]) -> None:
    # a causal LM without a chat template answered "<the server's home>/runs/<id>/model is a causal LM without
    # a chat template: the digest prompts it as a chat": a server path (this route promises none) and the
    # digest, which the client never asked for
    chat, tokenizer = tiny_models["chat"]
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    run = model_run(lambda d: save_tiny_model(chat, plain, d))
    answer = TestClient(create_app()).post("/summarize", json={"document": DOCS[0], "model": run.id})
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_input", answer.text
    message = answer.json()["message"]
    assert "without a chat template" in message and f"run:{run.id}/model" in message, message
    assert str(get_settings().home) not in message and "digest" not in message, message


def test_a_character_lm_is_refused_in_one_line_naming_what_it_is(tiny_models: dict[str, Any]) -> None:
    # a char_lstm run's model answered transformers' own refusal: several lines saying the model type
    # "char_lstm" is not recognised and advising `pip install --upgrade transformers`, which cannot help
    from tldrlab.models import build_model, save_model

    _, tokenizer = tiny_models["chat"]
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    char_lm = build_model("char_lstm", {"embedding_dim": 8, "hidden_dim": 8, "num_layers": 1}, plain)
    run = model_run(lambda d: save_model(char_lm, plain, d))
    answer = TestClient(create_app()).post("/summarize", json={"document": DOCS[0], "model": run.id})
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_input", answer.text
    message = answer.json()["message"]
    assert "char_lstm" in message and "without a chat template" in message, message
    assert "pip install" not in message and "\n" not in message, message


def test_a_model_directory_named_plainly_in_a_data_root_is_found(tiny_models: dict[str, Any]) -> None:
    # "model": "mine" for <data root>/mine answered 422 "no model 'mine' ... and no such path in the data
    # roots": a plain name was looked up as a name only (a run, an installed model, an alias), never as the
    # path relative to a data root that the API's paths are; "mine/" found it
    chat, tokenizer = tiny_models["chat"]
    save_tiny_model(chat, tokenizer, get_settings().resolved_data_roots[0] / "mine")
    client = TestClient(create_app())
    answers = [
        client.post("/summarize", json={"document": DOCS[0], "model": name, "max_new_tokens": 8})
        for name in ("mine", "mine/")
    ]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert answers[0].json()["model"] == "mine"
    assert answers[0].json()["summaries"] == answers[1].json()["summaries"]


def test_a_model_name_is_the_stores_whatever_the_servers_working_directory_holds(
    tiny_models: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server started in a directory holding an entry named like an installed model (`./mymodel`) answered
    403 path_not_allowed to a request naming the model `mymodel`: the working directory was looked at first
    and found outside the read roots. A plain name is a model in the store; the server's working directory
    means nothing to a client (and a worker's must not pick what a run loads)."""
    chat, tokenizer = tiny_models["chat"]
    save_tiny_model(chat, tokenizer, get_settings().models_dir / "mymodel")
    here = tmp_path / "server-cwd"
    (here / "mymodel").mkdir(parents=True)
    save_tiny_model(chat, tokenizer, here / "mymodel")  # a model too: the wrong one, outside the read roots
    (here / "notinstalled").mkdir()
    monkeypatch.chdir(here)
    client = TestClient(create_app())
    answer = client.post("/summarize", json={"document": DOCS[0], "model": "mymodel", "max_new_tokens": 8})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "mymodel"
    submitted = client.post(
        "/runs", json={"kind": "generate", "config": {"model_run": "mymodel", "prompts": ["hi"]}}
    )
    assert submitted.status_code == 202, submitted.text
    assert open_registry().get(submitted.json()["id"]).config["model_run"] == "mymodel"
    # a name the store does not know is no model, whatever the working directory holds: a 422, not a 403
    # that tells a client what lies in the server's working directory
    unknown = client.post("/summarize", json={"document": DOCS[0], "model": "notinstalled"})
    assert unknown.status_code == 422 and unknown.json()["code"] == "invalid_config", unknown.text
