"""A split the data does not have is refused when a run is submitted over HTTP, as the command line refuses
it before it creates a run: `POST /runs` answers 422 naming the field (code, message, request_id) and no run
is created. Before, the API accepted such a config with 202 and it became a failed run once a worker read
the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tldrlab.runs import open_registry
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
