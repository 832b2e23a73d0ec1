"""The home's model store as `tldrlab models list` and `GET /models` read it, including what they find there
that no import wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.models.resolve import bundled_gguf, installed_model_dir, resolve_model_ref
from tldrlab.models.store import import_model
from tldrlab.service.app import create_app

PAUSED_IMPORT = """
import sys, time
from tldrlab.models import io
from tldrlab.models.resolve import bundled_gguf, installed_model_dir, resolve_model_ref
from tldrlab.models.store import import_model

write_json = io.atomic_write_json

def pause_before_the_manifest(path, obj):  # the weights and tokenizer are written: hold the import there
    if path.name == io.MODEL_MANIFEST:
        print("writing", flush=True)
        time.sleep(600)
    write_json(path, obj)

io.atomic_write_json = pause_before_the_manifest
import_model(sys.argv[1], name=sys.argv[2])
"""


def test_a_store_manifest_with_wrong_types_is_listed_without_them(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a tldrlab_model.json holding valid JSON of the wrong shape (hand-edited, another tool's, a list) made
    # `models list` die on f"{parameters:,}" and GET /models answer 500 on its response model
    for name, manifest in [
        ("edited", {"parameters": "lots", "dtype": 5, "chat_template": "yes", "sha256": 7, "source": []}),
        ("listed", [1, 2]),
        ("flagged", {"parameters": True, "dtype": "float32", "chat_template": False}),
    ]:
        directory = tldrlab_home / "models" / name
        directory.mkdir(parents=True)
        (directory / "config.json").write_text("{}", encoding="utf-8")
        (directory / "tldrlab_model.json").write_text(json.dumps(manifest), encoding="utf-8")
    code, out, err = run_captured(["models", "list", "--json"], capsys)
    assert code == 0, err
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert {k: rows["edited"][k] for k in ("parameters", "dtype", "chat_template", "sha256", "source")} == {
        "parameters": None,
        "dtype": None,
        "chat_template": None,
        "sha256": None,
        "source": None,
    }
    assert rows["listed"]["parameters"] is None
    assert rows["flagged"]["parameters"] is None and rows["flagged"]["dtype"] == "float32"
    assert rows["flagged"]["chat_template"] is False
    code, out, err = run_captured(["models", "list"], capsys)
    assert code == 0 and "edited" in out and "Traceback" not in err, err
    with TestClient(create_app()) as client:
        response = client.get("/models")
    assert response.status_code == 200, response.text
    listed = {m["name"]: m for m in response.json()["models"]}
    assert listed["edited"]["parameters"] is None and listed["edited"]["dtype"] is None


def _paused_import(source: Path, name: str) -> subprocess.Popen[str]:
    """A real `import_model` in another process, stopped while its temporary directory is half written."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED_IMPORT, str(source), name], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n", "the import did not start"
    return proc


def _temporary_dirs(store: Path) -> set[str]:
    return {p.name for p in store.iterdir() if ".tmp-" in p.name and p.is_dir()}


def test_a_killed_import_leaves_nothing_behind_after_the_next_import(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `tldrlab models import` killed mid-write left `.NAME.tmp-*` (~0.5 GB for SmolLM2) in the store for good:
    # nothing listed or removed it. The next import (or listing) now removes what a dead writer left, and
    # never the directory an import still running is writing.
    tokenizer = tiny_chat_tokenizer()
    source = save_tiny_model(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny")
    store = tldrlab_home / "models"
    writer = _paused_import(source, "tiny")
    try:
        (being_written,) = _temporary_dirs(store)
        assert (store / being_written / "model.safetensors").is_file()  # the weights it has written so far
        assert import_model(source, name="other")["name"] == "other"  # another import meanwhile
        assert _temporary_dirs(store) == {being_written}  # still being written: kept
    finally:
        writer.kill()  # SIGKILL: no finally clause runs, as with an out-of-memory kill or a closed terminal
        writer.wait(timeout=30)
    assert _temporary_dirs(store) == {being_written}  # what the killed import left
    assert import_model(source, name="tiny")["name"] == "tiny"
    assert sorted(p.name for p in store.iterdir()) == ["other", "tiny"]  # its directory and lock file gone
    # written before writers took a lock: abandoned once untouched for an hour, kept while recent
    for name, age_s in [(".legacy.tmp-0123abcd", 7200), (".recent.tmp-89abcdef", 0)]:
        (store / name).mkdir()
        (store / name / "model.safetensors").write_bytes(b"\0" * 1024)
        then = time.time() - age_s
        os.utime(store / name / "model.safetensors", (then, then))
        os.utime(store / name, (then, then))
    code, out, err = run_captured(["models", "list", "--json"], capsys)  # a listing cleans up too
    assert code == 0, err
    assert [json.loads(line)["name"] for line in out.splitlines()][:2] == ["other", "tiny"]
    assert sorted(p.name for p in store.iterdir()) == [".recent.tmp-89abcdef", "other", "tiny"]


def test_an_empty_store_directory_does_not_block_an_import(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # an empty <home>/models/tiny (left by an interrupted import, or a mkdir) was "a model named 'tiny' is
    # already installed"; a non-empty directory holding no model still needs --force, and says what it is
    tokenizer = tiny_chat_tokenizer()
    source = save_tiny_model(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny")
    store = tldrlab_home / "models"
    (store / "tiny").mkdir(parents=True)
    code, out, err = run_captured(["models", "import", str(source), "--name", "tiny", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["name"] == "tiny" and (store / "tiny" / "config.json").is_file()
    code, _, err = run_captured(["models", "import", str(source), "--name", "tiny"], capsys)
    assert code != 0 and "a model named 'tiny' is already installed" in err, err
    (store / "junk").mkdir()
    (store / "junk" / "notes.txt").write_text("mine", encoding="utf-8")
    code, _, err = run_captured(["models", "import", str(source), "--name", "junk"], capsys)
    assert code != 0 and "Traceback" not in err, err
    assert "models/junk is in the way of the model 'junk': a directory holding no model" in err, err
    assert (store / "junk" / "notes.txt").is_file()


def test_an_empty_store_directory_is_no_installed_model(tldrlab_home: Path) -> None:
    # an empty <home>/models/NAME resolved as the installed model NAME ("no saved model in" it), hiding the
    # bundled model, an alias or a run id of that name
    (tldrlab_home / "models" / "smollm2").mkdir(parents=True)
    assert installed_model_dir("smollm2") is None
    assert resolve_model_ref("smollm2").path == bundled_gguf()


def test_an_import_s_progress_ends_with_every_phase_done(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # off a terminal the bar's last line stayed "writing ... (phase 3 of 4 done, ...)", written twice: the
    # import ended without its last phase counted, so a log never said the model was written
    tokenizer = tiny_chat_tokenizer()
    source = save_tiny_model(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny")
    import_model(source, name="tiny", progress=True, progress_label="import")
    lines = capsys.readouterr().err.splitlines()
    assert lines, "the import drew no progress"
    assert "(phase 4 of 4 done" in lines[-1], lines
    phases = [line.split(" (phase")[0] for line in lines]
    assert len(phases) == len(set(phases)), lines
