"""A `model_run` naming a run of a kind that never saves a model (a smoke run) is refused before a run exists,
naming the field: `POST /runs` of kind generate / score took it and the run failed with "has no saved model"
(while `POST /runs/{id}/generate` refused it with a 409), and the command lines said "not found" (exit 3) of
a run that is there. A training run is taken whatever its status: a queued one's model comes when it
completes."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.errors import InvalidConfigError
from tldrlab.launch import execute
from tldrlab.runs import RunStatus, create_run, open_registry
from tldrlab.service.app import create_app


def _smoke_run(capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_captured(["smoke", "--steps", "2", "--json"], capsys)
    assert code == 0, err
    smoke: str = json.loads(out)["run_id"]
    return smoke


def _refusal(run_id: str) -> str:
    return (
        f"model_run: run {run_id} is a smoke run, not a training run of a text model (train, "
        "lm_experiment_arm, lm_compress): give the id of one, or another model reference"
    )


CONFIGS = {
    "generate": {"prompts": ["Hello there."]},
    "score": {"text": "Hello there."},
    "evaluate": {},  # its data: the run's, which a smoke run has none of ("give data" named the wrong field)
}


def test_a_model_run_naming_a_run_that_saves_no_model_is_refused_at_submit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    smoke = _smoke_run(capsys)
    client = TestClient(create_app())
    for kind, config in CONFIGS.items():
        body = {"kind": kind, "config": {"model_run": smoke, **config}}
        response = client.post("/runs", json=body, headers={"X-Request-ID": "r-1"})
        answer = response.json()
        assert response.status_code == 422 and answer["code"] == "invalid_config", (kind, response.text)
        assert answer["request_id"] == "r-1" and answer["errors"][0]["loc"] == ["model_run"], answer
        assert answer["message"] == _refusal(smoke), answer
    for argv in (
        ["generate", smoke, "--prompt", "Hello there."],
        ["score", smoke, "--text", "Hello there."],
        ["eval", smoke],
    ):
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and f"[invalid_config] {_refusal(smoke)}" in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert [r.id for r in open_registry().list()] == [smoke]  # nothing created
    queued = create_run("train", {}).id  # its model comes when it completes
    for kind in ("generate", "score"):
        body = {"kind": kind, "config": {"model_run": queued, **CONFIGS[kind]}}
        assert client.post("/runs", json=body).status_code == 202, kind


def test_a_run_naming_a_run_that_saves_no_model_at_run_time_fails_naming_the_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The run named may have been replaced after the submit checked it: the run says what it is, naming the
    field, not "has no saved model"."""
    smoke = _smoke_run(capsys)
    for kind, config in CONFIGS.items():
        record = create_run(kind, {"model_run": smoke, **config})  # queued as if checked at submit
        with pytest.raises(InvalidConfigError):
            execute(record.id)
        failed = open_registry().get(record.id)
        assert failed.status == RunStatus.FAILED and _refusal(smoke) in (failed.message or ""), failed
