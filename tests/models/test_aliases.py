"""Model aliases: promotion with history, and the alias working wherever a model is named (resolver, generate,
score, evaluate, the digest's local model, GET /models), a cleaned run restored on the way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from netutil import serve_app
from tinylm import model_run, save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.errors import ConflictError, InvalidInputError, NotFoundError
from tldrlab.launch import launch_run
from tldrlab.models.resolve import resolve_model_ref
from tldrlab.runs import create_run, open_registry
from tldrlab.runs.aliases import alias_history, current_aliases, promote
from tldrlab.runs.archive import upload_run


def _chat_run(seed: int, data: Path) -> Any:
    tokenizer = tiny_chat_tokenizer()
    model = tiny_llama(tokenizer, seed=seed)
    return model_run(
        lambda d: save_tiny_model(model, tokenizer, d),
        config={"model": "causal_lm", "data": {"path": str(data)}},
    )


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"document": "The daemon watches a directory and runs a command.", "summary": "directory watcher"},
        {"document": "Python module for talking to PostgreSQL databases.", "summary": "database module"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_promote_keeps_history_and_refuses_what_it_cannot_point_at(pairs: Path) -> None:
    first, second = _chat_run(0, pairs), _chat_run(1, pairs)
    entry = promote(first.id[:-2], "production", note="first")
    assert entry.run_id == first.id and entry.previous_run_id is None
    assert resolve_model_ref("production").path == Path(first.run_dir).absolute() / "model"
    assert resolve_model_ref("production").source == "alias"
    moved = promote(second.id, "production", note="better")
    assert moved.previous_run_id == first.id
    assert resolve_model_ref("production").path == Path(second.run_dir).absolute() / "model"
    assert [e.run_id for e in alias_history("production")] == [second.id, first.id]
    assert current_aliases()["production"].note == "better"

    no_model = create_run("smoke", {}).id
    with pytest.raises(InvalidInputError, match="no saved model"):
        promote(no_model, "staging")
    with pytest.raises(NotFoundError):
        promote("no-such-run", "staging")
    for bad in ("9lives", "has space", "a/b", "x" * 80):
        with pytest.raises(InvalidInputError, match="invalid alias"):
            promote(second.id, bad)
    with pytest.raises(ConflictError):
        promote(second.id, "smollm2")
    with pytest.raises(ConflictError, match="run id"):
        promote(second.id, "train")  # every train run's id starts with it


def test_an_alias_works_wherever_a_model_is_named(pairs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tldrlab.digest.local_model import load_local_model
    from tldrlab.models.io import load_model
    from tldrlab.service.app import create_app

    run = _chat_run(0, pairs)
    promote(run.id, "production")
    assert load_model("production")[2] == "causal_lm"

    generated = launch_run("generate", {"model_run": "production", "prompts": ["a library"]}).result
    assert generated is not None and len(generated["outputs"]) == 1
    scored = launch_run("score", {"model_run": "production", "text": "a small library"}).result
    assert scored is not None and scored["num_tokens"] > 0
    evaluated = launch_run(
        "evaluate", {"model_run": "production", "max_samples": 2, "bertscore": False}
    ).result
    assert evaluated is not None and evaluated["metrics"]["examples"] == 2
    assert load_local_model("production").kind == "causal"

    with serve_app(create_app()) as url:
        listing = httpx.get(f"{url}/models").json()
        assert listing["aliases"][0]["alias"] == "production"
        assert listing["aliases"][0]["run_id"] == run.id and len(listing["aliases"][0]["history"]) == 1
        assert "/" not in json.dumps(listing["aliases"])  # no server paths
        # the API accepts the alias as a model reference (kept as a name: the worker resolves it)
        submitted = httpx.post(
            f"{url}/runs", json={"kind": "score", "config": {"model_run": "production", "text": "x"}}
        )
        assert submitted.status_code == 202, submitted.text

    # the run's directory cleaned after a verified upload: naming the alias restores it first
    upload_run(run.id)
    shutil.rmtree(run.run_dir)
    open_registry().update(run.id, cleaned_at=1.0)
    assert resolve_model_ref("production").path.is_dir()
    assert open_registry().get(run.id).cleaned_at is None


def test_a_model_is_not_installed_under_an_alias_or_a_run_id(pairs: Path, tmp_path: Path) -> None:
    # promote refused an alias named like an installed model, but `models import --name production` installed
    # one under an alias's name (or a run's id): the installed model then won the lookup, so every command
    # naming `production` silently loaded the imported model instead of the promoted run's
    from tldrlab.models.store import import_model

    run = _chat_run(0, pairs)
    promote(run.id, "production")
    tokenizer = tiny_chat_tokenizer()
    source = save_tiny_model(tiny_llama(tokenizer, seed=3), tokenizer, tmp_path / "other")
    with pytest.raises(ConflictError, match="'production' is a model alias"):
        import_model(source, name="production")
    with pytest.raises(ConflictError, match=f"{run.id!r} is a run id"):
        import_model(source, name=run.id)
    assert resolve_model_ref("production").source == "alias"
    assert resolve_model_ref(run.id).source == "run"
    assert import_model(source, name=run.id[:5])["name"] == run.id[:5]  # a prefix shadows no exact id
