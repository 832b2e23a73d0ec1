"""Generate and score request fields: a data set id as the prompt / text source, stop_on_eos, steps and
eos_terminated per output, score detail levels; through the run kinds and the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tinylm import model_run, save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.launch import launch_run
from tldrlab.runs.datasets import register_dataset


def _eager_eos_model(directory: Path) -> None:
    """A tiny chat LM whose output head strongly prefers its end-of-turn token (untied from the input
    embeddings, so prompts read as before)."""
    import torch

    tokenizer = tiny_chat_tokenizer()
    model = tiny_llama(tokenizer)
    model.config.tie_word_embeddings = False
    head = model.lm_head.weight.detach().clone()
    head[tokenizer.eos_token_id] = model.model.norm.weight.detach() * 40.0
    model.lm_head.weight = torch.nn.Parameter(head)
    save_tiny_model(model, tokenizer, directory)


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    rows = [
        {"document": f"The daemon number {i} watches a directory.", "summary": f"directory watcher {i}"}
        for i in range(5)
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _result(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    launched = launch_run(kind, config)
    assert launched.record.status.value == "completed", launched.record.message
    assert launched.result is not None
    return launched.result


def test_generate_from_a_data_set_with_steps_and_eos(pairs: Path) -> None:
    eager = model_run(_eager_eos_model)
    tokenizer = tiny_chat_tokenizer()
    plain = model_run(lambda d: save_tiny_model(tiny_llama(tokenizer), tokenizer, d))
    dataset, _ = register_dataset(pairs)

    stops = _result("generate", {"model_run": eager.id, "dataset": dataset.id, "limit": 3})
    assert len(stops["outputs"]) == 3 and [r["id"] for r in stops["records"]] == ["1", "2", "3"]
    assert all(
        d == {"steps": 1, "eos_terminated": True, "stopped": False} for ds in stops["details"] for d in ds
    )
    assert stops["outputs"] == [[""], [""], [""]]

    options = {"max_new_tokens": 7, "stop_on_eos": False}
    runs_on = _result("generate", {"model_run": eager.id, "prompts": ["a library"], "options": options})
    assert runs_on["details"] == [[{"steps": 7, "eos_terminated": False, "stopped": False}]]

    free = _result(
        "generate",
        {"model_run": plain.id, "prompts": ["a library", "a tool"], "options": {"max_new_tokens": 6}},
    )
    for outs, details in zip(free["outputs"], free["details"], strict=True):
        assert 1 <= details[0]["steps"] <= 6 and isinstance(outs[0], str)
        assert details[0]["eos_terminated"] == (details[0]["steps"] < 6)


def test_score_a_data_set_at_either_detail_level_over_the_api(pairs: Path) -> None:
    from tldrlab.service.app import create_app
    from tldrlab.service.worker import WorkerConfig, build_worker

    tokenizer = tiny_chat_tokenizer()
    run = model_run(lambda d: save_tiny_model(tiny_llama(tokenizer), tokenizer, d))
    dataset, _ = register_dataset(pairs)

    per_token = _result("score", {"model_run": run.id, "text": "a directory watcher", "top_k": 2})
    assert len(per_token["tokens"]) == per_token["num_tokens"] == len(per_token["surprisal_bits"])
    summary = _result(
        "score", {"model_run": run.id, "text": "a directory watcher", "detail_level": "summary"}
    )
    assert summary["loss"] == pytest.approx(per_token["loss"]) and "tokens" not in summary

    client = TestClient(create_app())
    scored = client.post(
        f"/runs/{run.id}/score",
        json={"config": {"dataset": dataset.id, "detail_level": "summary", "limit": 4}},
    )
    generated = client.post(  # a few tokens each: what is checked is one output per record
        f"/runs/{run.id}/generate",
        json={"config": {"dataset": f"dataset:{dataset.id}", "options": {"max_new_tokens": 4}}},
    )
    neither = client.post(f"/runs/{run.id}/generate", json={"config": {}})
    assert neither.status_code == 422 and "prompts or dataset" in neither.json()["message"]
    unknown = client.post(f"/runs/{run.id}/score", json={"config": {"dataset": "ds-20260101-0000000000"}})
    assert unknown.status_code == 422 and "no dataset" in unknown.json()["message"]
    assert scored.status_code == 202 and generated.status_code == 202, (scored.text, generated.text)
    build_worker(config=WorkerConfig(burst=True, heartbeat_s=0.2, poll_s=0.05)).run()

    result = client.get(f"/runs/{run.id}/score/{scored.json()['request_id']}").json()
    assert result["status"] == "completed", result["message"]
    totals = result["result"]
    rows = totals["per_record"]
    assert totals["records"] == len(rows) == 4 and totals["detail_level"] == "summary"
    assert all("tokens" not in r and r["num_tokens"] > 0 for r in rows)
    assert totals["num_tokens"] == sum(r["num_tokens"] for r in rows)
    weighted = sum(r["loss"] * r["num_tokens"] for r in rows) / totals["num_tokens"]
    assert totals["loss"] == pytest.approx(weighted)
    # a chat model scores each reference summary as its answer to the document
    document = "The daemon number 0 watches a directory."
    alone = _result("score", {"model_run": run.id, "text": "directory watcher 0", "source": document})
    assert rows[0]["loss"] == pytest.approx(alone["loss"])
    outputs = client.get(f"/runs/{run.id}/generate/{generated.json()['request_id']}").json()
    assert outputs["status"] == "completed" and len(outputs["result"]["details"]) == 5
