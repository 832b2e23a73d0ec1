"""One launch path: a training started by the CLI (in-process) and one started over HTTP (a queued run that a
real worker executes) with the same config store the same config and train to the same losses."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from svc_helpers import record

from cliutil import run_cli
from sequencesutil import write_tiny_sequences
from tldrlab.kinds import validate_config
from tldrlab.runs import RunStatus, open_registry
from tldrlab.runs.run import read_manifest
from tldrlab.service.app import create_app
from tldrlab.service.worker import WorkerConfig, build_worker

BURST = WorkerConfig(burst=True, heartbeat_s=0.1, poll_s=0.05)


def _losses(run_dir: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]


def test_cli_and_api_runs_of_one_config_store_the_same_config_and_losses(
    tmp_path: Path, tldrlab_home: Path
) -> None:
    data = tldrlab_home / "data" / "lines"  # inside the data root, where API runs may read
    data.mkdir(parents=True)  # a data-set directory with its own splits: both launches must record them
    text = "".join(f"line {i}: to be or not to be, that is the question.\n" for i in range(120))
    (data / "train.txt").write_text(text)
    (data / "dev.txt").write_text(text[:1500])
    config = {
        "model": "char_lstm",
        "model_settings": {"embedding_dim": 8, "hidden_dim": 16, "num_layers": 1},
        "data": {"path": str(data), "block_size": 16, "max_val_examples": 8},
        "tokenizer": {"method": "char", "vocab_size": 64},
        "train": {"max_steps": 6, "batch_size": 4, "eval_every": 3, "checkpoint_every": 3, "log_every": 1,
                  "device": "cpu", "progress": False, "plot": False, "seed": 5},
        "wandb": "disabled",
    }  # fmt: skip
    config_file = tmp_path / "job.yaml"
    config_file.write_text(yaml.safe_dump(config))

    assert run_cli(["train", "--config", str(config_file)]) == 0
    (cli_run,) = open_registry().list(kind="train")

    client = TestClient(create_app())
    api_config = {**config, "data": {**config["data"], "path": "lines"}}  # relative to the data root
    created = client.post("/runs", json={"kind": "train", "config": api_config})
    assert created.status_code == 202, created.text
    build_worker(config=BURST).run()
    api_run = record(created.json()["id"])

    assert cli_run.status == api_run.status == RunStatus.COMPLETED, (cli_run.message, api_run.message)
    assert cli_run.config["data"]["train_split"] == "train" and cli_run.config["data"]["val_split"] == "dev"
    assert cli_run.config == api_run.config  # the API's relative path became the same absolute one
    cli_manifest, api_manifest = read_manifest(cli_run.run_dir), read_manifest(api_run.run_dir)
    assert cli_manifest["config"] == api_manifest["config"]
    assert cli_manifest["seed"] == api_manifest["seed"] == 5
    cli_losses, api_losses = _losses(cli_run.run_dir), _losses(api_run.run_dir)
    assert [s for s, _ in cli_losses] == list(range(1, 7))
    assert cli_losses == api_losses


def test_a_section_given_in_part_keeps_its_kinds_defaults_over_http_as_on_the_command_line(
    tldrlab_home: Path,
) -> None:
    # the API validated a config as the CLI does, then confined a second, plain validation of it, which
    # filled `train: {max_steps: 100}` from TrainConfig's own defaults: an ELM run submitted over HTTP trained
    # with batch 16 and lr 3e-4 where the same config on the command line keeps ELM's 8 and 1e-3
    for split in ("train", "val"):  # a prepared layout's files (what elm_train checks before a run exists)
        for part in (f"synthesis/{split}_synthesis.jsonl", f"embeddings/{split}_embeddings.safetensors"):
            (tldrlab_home / "data" / "elm" / part).parent.mkdir(parents=True, exist_ok=True)
            (tldrlab_home / "data" / "elm" / part).write_bytes(b"")
    write_tiny_sequences(tldrlab_home / "data" / "s.npz")  # an empty file is refused at submit
    client = TestClient(create_app())
    for kind, config in (
        ("elm_train", {"data": "elm", "train": {"max_steps": 100}}),
        ("lvm_train", {"sequences": "s.npz", "train": {"max_steps": 100}}),
    ):
        created = client.post("/runs", json={"kind": kind, "config": config})
        assert created.status_code == 202, created.text
        stored = record(created.json()["id"]).config["train"]
        on_the_command_line = validate_config(kind, config).model_dump(mode="json")["train"]
        assert stored == on_the_command_line, kind
        assert stored["max_steps"] == 100
