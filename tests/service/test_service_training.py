"""A real training job through the service: POST /runs/train -> worker -> model; then generate, score and
evaluate requests against it, each a queued run executed by the worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tldrlab.service.app import create_app
from tldrlab.service.worker import WorkerConfig, build_worker

BURST = WorkerConfig(burst=True, heartbeat_s=0.2, poll_s=0.05)


def char_lstm_config(text_path: Path, steps: int = 20, **train: Any) -> dict[str, Any]:
    return {
        "model": "char_lstm",
        "model_settings": {"embedding_dim": 16, "hidden_dim": 32, "num_layers": 1},
        "data": {"path": str(text_path), "block_size": 32, "val_fraction": 0.1},
        "tokenizer": {"method": "char", "vocab_size": 100},
        "train": {
            "batch_size": 4,
            "device": "cpu",
            "progress": False,
            "log_every": 1,
            "lr": 1e-2,
            "max_steps": steps,
            "eval_every": 10,
            "checkpoint_every": 5,
            "plot": False,
            **train,
        },
        "wandb": "disabled",
    }


@pytest.fixture
def shakespeare(shared_data: Path, tldrlab_home: Path) -> Path:
    """A slice of tinyshakespeare in the home's data root (the only place API runs may read)."""
    lines = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()[:300]
    path = tldrlab_home / "data" / "shakespeare.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_train_then_generate_score_evaluate_over_the_api(shakespeare: Path) -> None:
    client = TestClient(create_app())
    created = client.post("/runs/train", json={"config": char_lstm_config(shakespeare)})
    assert created.status_code == 202, created.text
    run_id = created.json()["id"]
    build_worker(config=BURST).run()
    run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "completed", run["message"]
    assert any(a["path"].startswith("model/") for a in run["artifacts"])
    steps = [m["step"] for m in client.get(f"/runs/{run_id}/metrics").json()["metrics"] if "train_loss" in m]
    assert steps == list(range(1, 21))

    gen = client.post(
        f"/runs/{run_id}/generate",
        json={"config": {"prompts": ["ROMEO:"], "options": {"max_new_tokens": 12, "seed": 1}}},
    )
    score = client.post(f"/runs/{run_id}/score", json={"config": {"text": "ROMEO: what light", "top_k": 2}})
    evaluation = client.post(f"/runs/{run_id}/evaluate", json={"config": {"max_samples": 4}})
    bad = client.post(f"/runs/{run_id}/generate", json={"config": {"prompts": []}})
    assert bad.status_code == 422 and "prompts" in bad.json()["message"]  # refused at submit
    for response in (gen, score, evaluation):
        assert response.status_code == 202 and response.json()["status"] == "queued", response.text
    build_worker(config=BURST).run()

    generated = client.get(f"/runs/{run_id}/generate/{gen.json()['request_id']}").json()
    assert generated["status"] == "completed", generated["message"]
    outputs = generated["result"]["outputs"]
    assert len(outputs) == 1 and len(outputs[0]) == 1 and isinstance(outputs[0][0], str)
    scored = client.get(f"/runs/{run_id}/score/{score.json()['request_id']}").json()
    assert scored["status"] == "completed" and scored["result"]["perplexity"] > 1
    asked = {"evaluation": evaluation.json()["request_id"]}  # by default the route answers the final one
    evaluated = client.get(f"/runs/{run_id}/eval", params=asked).json()
    assert evaluated["status"] == "completed", evaluated["message"]
    assert evaluated["metrics"]["perplexity"] > 1 or evaluated["metrics"]["loss"] > 0
    # A request id of one kind is not served under another.
    assert client.get(f"/runs/{run_id}/score/{gen.json()['request_id']}").status_code == 404
