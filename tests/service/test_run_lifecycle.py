"""The run lifecycle through the service: a real worker process trains a run, uploads its archive to the file
store and cleans its directory by the retention policy; an evaluation submitted later restores the run from
the store (checked against its sha256) and evaluates it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from svc_helpers import record, start_worker, stop, wait_for

from netutil import serve_app
from tldrlab.config import get_settings
from tldrlab.runs.filestore import open_file_store
from tldrlab.service.app import create_app

LIFECYCLE_ENV = {
    "TLDRLAB_UPLOAD_RUNS": "1",
    "TLDRLAB_RETENTION__ENABLED": "true",
    "TLDRLAB_RETENTION__KINDS": '["train"]',
    "TLDRLAB_RETENTION__OLDER_THAN_DAYS": "0",
    "TLDRLAB_RETENTION__GRACE_PERIOD_S": "0",
    "TLDRLAB_RETENTION__KEEP_BEST": "0",
}


@pytest.fixture
def corpus(tldrlab_home: Path) -> Path:
    path = tldrlab_home / "data" / "corpus.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"line {i}: the daemon watches a directory and runs a command." for i in range(120)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_worker_uploads_and_cleans_and_an_evaluation_restores_from_the_store(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in LIFECYCLE_ENV.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    config = {
        "model": "char_lstm",
        "model_settings": {"embedding_dim": 8, "hidden_dim": 16, "num_layers": 1},
        "data": {"path": "corpus.txt", "block_size": 16, "val_fraction": 0.1},
        "tokenizer": {"method": "char", "vocab_size": 60},
        "train": {"batch_size": 4, "max_steps": 4, "eval_every": 2, "checkpoint_every": 2, "plot": False},
        "wandb": "disabled",
    }
    worker = start_worker(log=tmp_path / "worker.log")
    try:
        with serve_app(create_app()) as url:
            created = httpx.post(f"{url}/runs/train", json={"config": config})
            assert created.status_code == 202, created.text
            run_id = created.json()["id"]
            cleaned = wait_for(
                lambda: (r := record(run_id)).cleaned_at is not None and r, 120, what="the run to be cleaned"
            )
            assert cleaned.status.value == "completed" and cleaned.archive_sha256
            assert not Path(cleaned.run_dir).exists()
            store = open_file_store()
            archive = store.path_for(cleaned.archive_sha256)  # type: ignore[union-attr]
            assert hashlib.sha256(archive.read_bytes()).hexdigest() == cleaned.archive_sha256
            events = httpx.get(f"{url}/cleanup/events").json()["events"]
            assert [(e["type"], e["action"], e["run_id"]) for e in events] == [
                ("cleanup_completed", "clean", run_id)
            ]
            assert events[0]["bytes_freed"] > 0 and events[0]["files_deleted"] > 3

            evaluation = httpx.post(f"{url}/runs/{run_id}/evaluate", json={"config": {"max_samples": 3}})
            assert evaluation.status_code == 202, evaluation.text
            request_id = evaluation.json()["request_id"]
            done = wait_for(
                lambda: (r := record(request_id)).status.finished and r, 120, what="the evaluation"
            )
            assert done.status.value == "completed", done.message
            restored = record(run_id)
            assert restored.cleaned_at is None and (Path(restored.run_dir) / "model").is_dir()
            manifest = json.loads((Path(restored.run_dir) / "manifest.json").read_text())
            assert manifest["archive"]["sha256"] == cleaned.archive_sha256
            assert (Path(restored.run_dir) / "eval.json").is_file()  # results next to the evaluated model
            final = json.loads((Path(restored.run_dir) / "manifest.json").read_text())["final_eval_run"]
            assert record(final).parent_id == run_id and record(final).status.value == "completed"
            result = httpx.get(f"{url}/runs/{run_id}/eval").json()
            assert result["status"] == "completed" and result["result"]["metrics"]["loss"] > 0
            # evaluations keep nothing alive; the restored run holds new files (the evaluation's, next to
            # its model), so the next pass uploads it again before it cleans it
            prune = httpx.post(f"{url}/cleanup/prune", json={"dry_run": False}).json()
            assert [(a["target"], a["action"], a["status"]) for a in prune["actions"]] == [
                (run_id, "clean", "done")
            ]
            again = record(run_id)
            assert again.cleaned_at is not None and again.archive_sha256 != cleaned.archive_sha256
            from tldrlab.runs.archive import restore_run

            assert (Path(restore_run(run_id).run_dir) / "eval.json").is_file()
    finally:
        stop(worker)
