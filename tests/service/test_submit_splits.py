"""A split the data does not have is refused when a run is submitted over HTTP, as the command line refuses
it before it creates a run: `POST /runs` answers 422 naming the field (code, message, request_id) and no run
is created. Before, the API accepted such a config with 202 and it became a failed run once a worker read
the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tldrlab.kinds import validate_config
from tldrlab.runs import create_run, open_registry
from tldrlab.runs.aliases import promote
from tldrlab.service.app import create_app


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


@pytest.fixture
def data_root(tldrlab_home: Path) -> Path:
    """The API's data root: an unsplit file (`text.txt`) and a file whose name makes it the dev split."""
    root = tldrlab_home / "data"
    root.mkdir(parents=True)
    (root / "text.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    (root / "notes.dev.txt").write_text("Whether 'tis nobler in the mind to suffer.\n" * 20)
    return root


def _submit(client: TestClient, kind: str, config: dict[str, Any]) -> Any:
    return client.post("/runs", json={"kind": kind, "config": config}, headers={"X-Request-ID": "req-split"})


def _refused(client: TestClient, kind: str, config: dict[str, Any], field: str, split: str) -> str:
    """The message of a 422 refusal naming `field`: `split` is not in the unsplit text.txt."""
    response = _submit(client, kind, config)
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "invalid_config" and body["request_id"] == "req-split"
    message: str = body["message"]
    assert message.startswith(f"{field}: "), message
    # the one rule reads use (tldrlab.data.readers.split_files), its words, with the client's path
    assert f"no {split!r} split in this single file (it has no splits)" in message, message
    # the file as the client names it (relative to the data root), never the server's path
    assert message.startswith(f"{field}: text.txt: no {split!r} split"), message
    return message


def test_a_split_the_data_lacks_is_a_422_naming_the_field_and_no_run(
    client: TestClient, data_root: Path
) -> None:
    trained = _submit(client, "train", {"data": {"path": "text.txt"}})
    assert trained.status_code == 202, trained.text
    run_id = trained.json()["id"]
    registry = open_registry()
    before = [r.id for r in registry.list()]
    assert before == [run_id]

    _refused(
        client,
        "train",
        {"data": {"path": "text.txt", "val_split": "validation"}},
        "data.val_split",
        "validation",
    )
    _refused(
        client, "train", {"data": {"path": "text.txt", "train_split": "train"}}, "data.train_split", "train"
    )
    for kind, content in (("generate", "prompts"), ("score", "text")):
        config = {"model_run": run_id, "dataset": "text.txt", "split": "test"}
        _refused(client, kind, config, "split", "test")
        assert content not in config
    _refused(client, "evaluate", {"model_run": run_id, "data": "text.txt", "split": "test"}, "split", "test")
    # no data given: the training run's own data (text.txt, unsplit), as the evaluation would read it
    _refused(client, "evaluate", {"model_run": run_id, "split": "validation"}, "split", "validation")
    assert [r.id for r in registry.list()] == before


def test_a_split_the_data_has_is_still_accepted(client: TestClient, data_root: Path) -> None:
    trained = _submit(client, "train", {"data": {"path": "notes.dev.txt", "val_split": "validation"}})
    assert trained.status_code == 202, trained.text
    run_id = trained.json()["id"]
    accepted = [
        ("generate", {"model_run": run_id, "dataset": "notes.dev.txt", "split": "dev"}),
        ("score", {"model_run": run_id, "dataset": "notes.dev.txt", "split": "validation"}),
        ("evaluate", {"model_run": run_id, "data": "notes.dev.txt", "split": "dev"}),
        ("evaluate", {"model_run": run_id, "split": "validation"}),
        # no split: the whole file, as before
        ("generate", {"model_run": run_id, "dataset": "text.txt"}),
    ]
    for kind, config in accepted:
        response = _submit(client, kind, config)
        assert response.status_code == 202, (kind, config, response.text)
    assert len(open_registry().list()) == 1 + len(accepted)


def _trained(client: TestClient, data: str) -> str:
    """A training run of `data` (queued, as the API leaves it) whose model is saved: its `model/` holds the
    config.json by which a model directory is known (no weights are read at submit)."""
    response = _submit(client, "train", {"data": {"path": data}})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    model = Path(open_registry().get(run_id).run_dir) / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    return run_id


def test_evaluate_with_no_data_checks_its_runs_split_however_the_model_is_named(
    client: TestClient, data_root: Path
) -> None:
    """Evaluate with no `data` reads the model's training run's data: its split was checked only when
    `model_run` was a run id; an alias or `run:<id>/model` (which the evaluation resolves to the same run)
    was accepted and failed once a worker read the data."""
    run_id = _trained(client, "text.txt")
    promote(run_id, "production")
    registry = open_registry()
    before = [r.id for r in registry.list()]
    for reference in (run_id, run_id[:-3], "production", f"run:{run_id}/model"):
        _refused(client, "evaluate", {"model_run": reference, "split": "validation"}, "split", "validation")
    assert [r.id for r in registry.list()] == before
    dev = _trained(client, "notes.dev.txt")
    promote(dev, "staging")
    for reference in (dev, "staging", f"run:{dev}/model"):
        response = _submit(client, "evaluate", {"model_run": reference, "split": "dev"})
        assert response.status_code == 202, (reference, response.text)


def test_evaluate_with_no_data_of_a_model_that_is_no_runs_is_a_422_at_data(
    client: TestClient, data_root: Path
) -> None:
    """The bundled model (or any model no run made) has no run data: such an evaluation was queued and failed
    at once ('no data to evaluate on'); the command line refuses it before it creates a run."""
    registry = open_registry()
    for config in ({"model_run": "smollm2"}, {"model_run": "smollm2", "split": "validation"}):
        response = _submit(client, "evaluate", config)
        body = response.json()
        assert response.status_code == 422 and body["code"] == "invalid_config", response.text
        assert body["message"].startswith("data: 'smollm2' is not a training run's model"), body
        assert body["request_id"] == "req-split"
    assert registry.list() == []
    accepted = _submit(client, "evaluate", {"model_run": "smollm2", "data": "text.txt"})
    assert accepted.status_code == 202, accepted.text


def test_a_relative_data_path_a_command_line_run_stored_is_left_to_the_worker(
    client: TestClient, data_root: Path
) -> None:
    """A command-line run may store a path relative to where it ran: the worker resolves it against its own
    working directory, which the API cannot know, so the split is not refused at submit."""
    config = validate_config("train", {"data": {"path": "text.txt"}})
    record = create_run("train", config)
    response = _submit(client, "evaluate", {"model_run": record.id, "split": "validation"})
    assert response.status_code == 202, response.text


def test_generate_and_score_of_a_data_set_directory_with_no_split_read_its_held_out_split(
    client: TestClient, data_root: Path
) -> None:
    """Submitted with a data-set directory and no split, generate and score read every file of it, the
    training ones too; the run's config records its held-out split, as the command line's does."""
    trained = _submit(client, "train", {"data": {"path": "text.txt"}})
    assert trained.status_code == 202, trained.text
    (data_root / "pairs").mkdir()
    for split in ("train", "test"):
        (data_root / "pairs" / f"{split}.jsonl").write_text('{"document": "a b c", "summary": "a"}\n')
    for kind in ("generate", "score"):
        response = _submit(client, kind, {"model_run": trained.json()["id"], "dataset": "pairs"})
        assert response.status_code == 202, response.text
        assert open_registry().get(response.json()["id"]).config["split"] == "test"
