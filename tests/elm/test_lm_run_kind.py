"""An ELM's `lm` naming a run of a kind that never saves a model (a smoke run) is refused before a run
exists, naming the field: the submit check left any LM it did not find to the run (as it must a queued
training run's), so `elm_compare_lm` / `elm_train` with such an `lm` were accepted and the run failed with
"has no saved model"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.errors import InvalidConfigError
from tldrlab.launch import execute
from tldrlab.runs import RunStatus, create_run, open_registry
from tldrlab.service.app import create_app


def test_an_elm_lm_naming_a_run_that_saves_no_model_is_refused_at_submit(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_captured(["smoke", "--steps", "2", "--json"], capsys)
    assert code == 0, err
    smoke = json.loads(out)["run_id"]
    refusal = (
        f"lm: run {smoke} is a smoke run, not a training run of a text model (train, lm_experiment_arm, "
        "lm_compress): give the id of one, or another model reference"
    )
    pairs = tldrlab_home / "data" / "pairs.jsonl"  # inside the API's data root
    pairs.parent.mkdir(parents=True, exist_ok=True)
    pairs.write_text('{"document": "a small library", "summary": "a library"}\n' * 4)
    client = TestClient(create_app())
    body = {"kind": "elm_compare_lm", "config": {"data": "pairs.jsonl", "lm": smoke, "systems": ["elm"]}}
    response = client.post("/runs", json=body, headers={"X-Request-ID": "r-1"})
    answer = response.json()
    assert response.status_code == 422 and answer["code"] == "invalid_config", response.text
    assert answer["request_id"] == "r-1" and answer["errors"][0]["loc"] == ["lm"], answer
    assert answer["message"] == refusal, answer
    argv = ["elm", "compare-lm", "--data", str(pairs), "--lm", smoke, "--systems", "elm"]
    code, _, err = run_captured(argv, capsys)
    assert code == 2 and f"[invalid_config] {refusal}" in err and len(err.strip().splitlines()) == 1, err
    assert [r.id for r in open_registry().list()] == [smoke]  # nothing created
    queued = create_run("train", {}).id  # a training run still to come: left to the run, as before
    body["config"]["lm"] = queued
    assert client.post("/runs", json=body).status_code == 202


def test_an_elm_lm_naming_a_run_that_saves_no_model_at_run_time_fails_naming_the_field(
    tldrlab_home: Path, elm_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run `lm` names may have been replaced after the submit checked it: elm_train took the id for a
    Hugging Face name and failed offline ("cannot load a causal LM"), elm_compare_lm said "has no saved
    model"; neither named the field."""
    code, out, err = run_captured(["smoke", "--steps", "2", "--json"], capsys)
    assert code == 0, err
    smoke = json.loads(out)["run_id"]
    refusal = f"run {smoke} is a smoke run, not a training run of a text model"
    pairs = tldrlab_home / "pairs.jsonl"
    pairs.write_text('{"document": "a small library", "summary": "a library"}\n' * 4)
    configs = {
        "elm_train": ({"data": str(elm_data), "model": {"lm": smoke}}, "model.lm"),
        "elm_compare_lm": ({"data": str(pairs), "lm": smoke, "systems": ["elm"]}, "lm"),
    }
    for kind, (config, field) in configs.items():
        record = create_run(kind, config)  # queued as if checked at submit
        with pytest.raises(InvalidConfigError):
            execute(record.id)
        failed = open_registry().get(record.id)
        assert failed.status == RunStatus.FAILED, (kind, failed)
        assert f"{field}: {refusal}" in (failed.message or ""), (kind, failed.message)


def test_generate_of_an_elm_training_not_done_says_it_has_not_saved_its_elm(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A queued or running elm_train run has no ELM yet: the refusal was "no ELM in <run dir> (expected
    elm_config.json there or in model/)", as if the id named the wrong place."""
    queued = create_run("elm_train", {"data": str(tldrlab_home / "elm")}).id
    code, _, err = run_captured(["elm", "generate", "--model", queued, "--text", "One."], capsys)
    said = f"run {queued} (elm_train, queued) has saved no ELM: an elm_train run saves it when it completes"
    assert code == 3 and f"[not_found] {said}" in err, err
