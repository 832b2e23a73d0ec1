"""An API sweep's trials take the configs their run kind builds from the same base + parameters, as the
command line's sweeps and `tldrlab elm train` / `tldrlab train` do: a section given in part keeps the kind's
defaults, and the kept checkpoint follows the sweep's metric. `POST /runs` used to store the base config
validated with the parameters merged over whole sections (an ELM `train: {max_steps: 2}` became TrainConfig's
1000 steps, batch 16, lr 3e-4) and with every default written out (`best_metric: eval_loss` fixed for every
trial of a sweep on eval_rougeL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sequencesutil import write_tiny_sequences
from tldrlab.kinds import validate_config
from tldrlab.runs import open_registry
from tldrlab.service.app import create_app
from tldrlab.sweep.spec import parse_sweep
from tldrlab.sweep.trials import TRIAL_PROGRAMS


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


def _submitted(client: TestClient, sweep: dict[str, Any]) -> dict[str, Any]:
    """The sweep config the API stored for the sweep run (what its trials are built from)."""
    response = client.post("/runs", json={"kind": "sweep", "config": {"sweep": sweep}})
    assert response.status_code == 202, response.text
    stored: dict[str, Any] = open_registry().get(response.json()["id"]).config["sweep"]
    return stored


def test_an_api_elm_sweep_trial_keeps_the_elm_train_sections_defaults(
    client: TestClient, tldrlab_home: Path
) -> None:
    import torch

    from tldrlab.elm.prepare import write_split

    data = tldrlab_home / "data" / "elm"
    data.mkdir(parents=True)
    sweep = {
        "program": "tldrlab.elm",
        "method": "grid",
        "metric": {"name": "bertscore_composite", "goal": "maximize"},
        "parameters": {"train.lr": {"values": [1e-3, 2e-3]}},
        "config": {"data": "elm", "train": {"max_steps": 2}},
    }
    # its trials would find no prepared data: refused at submit, as `tldrlab sweep run` refuses it
    refused = client.post("/runs", json={"kind": "sweep", "config": {"sweep": sweep}})
    assert refused.status_code == 422 and "not a prepared ELM data directory" in refused.json()["message"]
    record = {"task_type": "summary", "embedding_index": 0, "target_text": "a summary"}
    for split in ("train", "val"):
        write_split(data, split, [record], torch.zeros(1, 4))
    spec = parse_sweep(_submitted(client, sweep))
    trial = TRIAL_PROGRAMS["elm"].config(spec, {"train.lr": 2e-3})
    assert (trial.train.max_steps, trial.train.batch_size, trial.train.lr) == (2, 8, 2e-3)  # type: ignore[attr-defined]
    raw = {
        "data": str(data),
        "train": {"max_steps": 2, "lr": 2e-3, "best_metric": "bertscore_composite", "best_mode": "max"},
        "use_bertscore": True,
    }
    assert trial == validate_config("elm_train", raw)


def test_an_api_train_sweep_keeps_the_best_checkpoint_on_its_metric(
    client: TestClient, tldrlab_home: Path
) -> None:
    text = tldrlab_home / "data" / "text.txt"
    text.parent.mkdir(parents=True)
    text.write_text("To be, or not to be, that is the question.\n" * 20)
    sweep = {
        "program": "tldrlab.train",
        "method": "grid",
        "metric": {"name": "eval_rougeL", "goal": "maximize"},
        "parameters": {"train.lr": {"values": [1e-3]}},
        # ROUGE needs generating evaluations of a seq2seq model (a train config refuses a best_metric its
        # evaluations do not compute)
        "config": {
            "model": "t5",
            "data": {"path": "text.txt", "generate_every": 1},
            "train": {"max_steps": 4},
        },
    }
    spec = parse_sweep(_submitted(client, sweep))
    trial = TRIAL_PROGRAMS["train"].config(spec, {"train.lr": 1e-3})
    assert (trial.train.best_metric, trial.train.best_mode, trial.train.max_steps) == (
        "eval_rougeL",
        "max",
        4,
    )  # type: ignore[attr-defined]
    assert trial.data.path == str(text)  # type: ignore[attr-defined]


def test_an_api_lvm_sweep_is_accepted_and_its_trials_read_the_confined_sequences(
    client: TestClient, tldrlab_home: Path
) -> None:
    """`program: tldrlab.lvm` was refused over HTTP ('a command line would run code on the server') though
    it runs tldrlab in-process like the other programs; its sequences path is confined like any input."""
    sequences = tldrlab_home / "data" / "lvm" / "sequences.npz"
    write_tiny_sequences(sequences)  # read at submit as a sequences file (a trial's check)
    sweep = {
        "program": "tldrlab.lvm",
        "method": "grid",
        "metric": {"name": "val_cosine", "goal": "maximize"},
        "parameters": {"train.lr": {"values": [1e-3, 3e-3]}},
        "config": {"sequences": "lvm/sequences.npz", "train": {"max_steps": 60}},
    }
    spec = parse_sweep(_submitted(client, sweep))
    trial = TRIAL_PROGRAMS["lvm"].config(spec, {"train.lr": 3e-3})
    assert trial.sequences == str(sequences)  # type: ignore[attr-defined]
    assert (trial.train.max_steps, trial.train.lr) == (60, 3e-3)  # type: ignore[attr-defined]
    # a path outside the data roots, or a parameter choosing a path per trial: refused as for other programs
    outside = {**sweep, "config": {**sweep["config"], "sequences": "/etc/passwd"}}
    response = client.post("/runs", json={"kind": "sweep", "config": {"sweep": outside}})
    assert response.status_code == 403 and response.json()["code"] == "path_not_allowed", response.text
    chooser = {**sweep, "parameters": {"sequences": {"values": ["lvm/sequences.npz"]}}}
    response = client.post("/runs", json={"kind": "sweep", "config": {"sweep": chooser}})
    assert response.status_code == 403 and "may not choose paths" in response.json()["message"], response.text


def test_an_api_sweep_whose_trials_cannot_compute_its_metric_is_refused_at_submit(
    client: TestClient, tldrlab_home: Path
) -> None:
    # a trial's kept checkpoint follows the sweep's metric; a char_lstm's evaluations compute losses only, so
    # every trial of this sweep would fail at its first evaluation: the API took it (202) and queued it
    text = tldrlab_home / "data" / "text.txt"
    text.parent.mkdir(parents=True)
    text.write_text("To be, or not to be, that is the question.\n" * 20)
    sweep = {
        "program": "tldrlab.train",
        "method": "grid",
        "metric": {"name": "eval_rougeL", "goal": "maximize"},
        "parameters": {"train.lr": {"values": [1e-3]}},
        "config": {"model": "char_lstm", "data": {"path": "text.txt"}, "train": {"max_steps": 4}},
    }
    response = client.post("/runs", json={"kind": "sweep", "config": {"sweep": sweep}})
    assert response.status_code == 422, response.text
    body = response.json()
    assert "sweep.config.train.best_metric" in body["message"], body
    assert "eval_rougeL" in body["message"]
    assert open_registry().list(kind=["sweep"]) == []


def test_an_api_sweep_stores_the_base_config_the_client_wrote_not_a_drawn_trial(
    client: TestClient, tldrlab_home: Path
) -> None:
    """The submit check validates the base config with plausible parameter values drawn into it; the sweep
    run stored that checked config, so its base held one draw (`train.lr: 0.0055` where the client wrote
    0.005, a `train.warmup_steps` the client never set) and every default of the `train` section. Only the
    paths are rewritten (confined); the search space stays in `parameters`."""
    sequences = tldrlab_home / "data" / "lvm" / "sequences.npz"
    write_tiny_sequences(sequences)  # read at submit as a sequences file (a trial's check)
    sweep = {
        "program": "tldrlab.lvm",
        "method": "random",
        "metric": {"name": "val_cosine", "goal": "maximize"},
        "parameters": {"train.lr": {"min": 1e-4, "max": 1e-2}, "train.warmup_steps": {"values": [1, 2]}},
        "config": {"sequences": "lvm/sequences.npz", "train": {"max_steps": 60, "lr": 5e-3}},
    }
    stored = _submitted(client, sweep)
    assert stored["config"] == {"sequences": str(sequences), "train": {"max_steps": 60, "lr": 5e-3}}
    assert stored["parameters"] == sweep["parameters"]


def test_an_api_experiment_sweep_keeps_its_base_arm_and_seed(client: TestClient, tldrlab_home: Path) -> None:
    """An experiment's `arm` and `seed` are no fields of its config: the stored base config dropped them, so
    every trial trained the default arm (compressed_pai) and seed 1 where the client asked for another."""
    records = tldrlab_home / "data" / "records.jsonl"
    records.parent.mkdir(parents=True)
    records.write_text('{"source": "a long text to summarize", "target": "a summary"}\n' * 4)
    sweep = {
        "program": "tldrlab.experiment",
        "method": "grid",
        "metric": {"name": "highlight_p_at_3", "goal": "maximize"},
        "parameters": {"dendrites.switch_every": {"values": [5, 7]}},
        "config": {"data": "records.jsonl", "budget_steps": 10, "arm": "baseline", "seed": 3},
    }
    stored = _submitted(client, sweep)
    assert stored["config"] == {"data": str(records), "budget_steps": 10, "arm": "baseline", "seed": 3}
    # an arm no trial could train is refused at submit, as the command line's check refuses it
    bad = {**sweep, "config": {**sweep["config"], "arm": "pai"}}
    response = client.post("/runs", json={"kind": "sweep", "config": {"sweep": bad}})
    assert response.status_code == 422, response.text
    assert "sweep.config.arm: unknown arm 'pai'" in response.json()["message"]
